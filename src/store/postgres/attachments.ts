import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { Attachment } from '../../ticket.js';
import type { InboundAttachment } from '../../channels/types.js';
import type { Clock } from '../../clock.js';
import { GatewayError } from '../../errors.js';
import { first, query, storeError } from './db.js';

/**
 * Attachments of a cluster, content-addressed by SHA-256 in the shared database
 * so that whichever instance a citizen's photo arrived on, every instance can
 * serve it. Saved (committed) before the ticket that lists it, as on disk; the
 * same file sent twice is stored once. Same shape and URL as the file store.
 */
export class PgAttachmentStore {
  constructor(
    private readonly pool: pg.Pool,
    private readonly clock: Clock,
    private readonly maxBytes: number,
  ) {}

  async save(att: InboundAttachment): Promise<Attachment> {
    if (att.data.length > this.maxBytes) {
      throw new GatewayError('INPUT_TOO_LARGE', `attachment ${att.fileName} is ${att.data.length} bytes, over ${this.maxBytes}`);
    }
    const sha256 = createHash('sha256').update(att.data).digest('hex');
    try {
      await query(
        this.pool,
        `INSERT INTO attachments (sha256, data, size, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (sha256) DO NOTHING`,
        [sha256, att.data, att.data.length, this.clock.now()],
      );
    } catch (err) {
      throw storeError(err);
    }
    return {
      fileName: att.fileName || 'attachment',
      mimeType: att.mimeType || 'application/octet-stream',
      size: att.data.length,
      sha256,
      url: `/api/v1/attachments/${sha256}`,
    };
  }

  /** The file's bytes, or null when no such attachment is stored. */
  async read(sha256: string): Promise<Buffer | null> {
    if (!/^[0-9a-f]{64}$/.test(sha256)) return null;
    try {
      return (await first<{ data: Buffer }>(this.pool, `SELECT data FROM attachments WHERE sha256 = $1`, [sha256]))?.data ?? null;
    } catch (err) {
      throw storeError(err);
    }
  }
}
