import { createHash } from 'node:crypto';
import { mkdir, open, readFile, rename, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Attachment } from '../ticket.js';
import type { InboundAttachment } from '../channels/types.js';
import type { AttachmentFiles } from './types.js';
import { GatewayError } from '../errors.js';

/**
 * Attachments are kept content-addressed (by SHA-256) under DATA_DIR/attachments,
 * written and fsynced before the ticket that lists them commits, so a ticket never
 * points at a file that a crash lost. The same photo sent twice is stored once.
 */
export class AttachmentStore implements AttachmentFiles {
  private readonly dir: string;

  constructor(dataDir: string, private readonly maxBytes: number) {
    this.dir = join(dataDir, 'attachments');
  }

  path(sha256: string): string {
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new GatewayError('NOT_FOUND', 'no such attachment');
    return join(this.dir, sha256.slice(0, 2), sha256);
  }

  async read(sha256: string): Promise<Buffer | null> {
    if (!/^[0-9a-f]{64}$/.test(sha256)) return null;
    return readFile(this.path(sha256)).catch(() => null);
  }

  async save(att: InboundAttachment): Promise<Attachment> {
    if (att.data.length > this.maxBytes) {
      throw new GatewayError('INPUT_TOO_LARGE', `attachment ${att.fileName} is ${att.data.length} bytes, over ${this.maxBytes}`);
    }
    const sha256 = createHash('sha256').update(att.data).digest('hex');
    const final = this.path(sha256);
    const exists = await stat(final).then(
      () => true,
      () => false,
    );
    if (!exists) {
      await mkdir(join(this.dir, sha256.slice(0, 2)), { recursive: true });
      const tmp = `${final}.${process.pid}.${Date.now()}.tmp`;
      const fh = await open(tmp, 'w');
      try {
        await fh.writeFile(att.data);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, final);
    }
    return {
      fileName: att.fileName || 'attachment',
      mimeType: att.mimeType || 'application/octet-stream',
      size: att.data.length,
      sha256,
      url: `/api/v1/attachments/${sha256}`,
    };
  }
}
