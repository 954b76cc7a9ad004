import { z } from 'zod';
import { optionalString, optionalUrl, positiveInt } from '../../config-types.js';

/** Mayor's mailbox settings (IMAP in, SMTP out, web form). */
export const mailboxConfig = {
  /** `imap(s)://user:pass@host:port/INBOX`; absent = IMAP intake off. */
  IMAP_URL: optionalUrl('imap', 'imaps'),
  /** `smtp(s)://user:pass@host:port` for receipts and replies; absent = no mail out. */
  SMTP_URL: optionalUrl('smtp', 'smtps'),
  /** From address of receipts and replies. */
  MAILBOX_ADDRESS: optionalString(),
  /** Largest mail accepted, in bytes; larger ones go to intake.rejected. */
  MAIL_MAX_BYTES: positiveInt(),
  /** Web form submissions per IP per minute. */
  FORM_RATE_LIMIT: positiveInt(),
  /** The web form at GET /mailbox is served. */
  MAILBOX_FORM: z.union([z.boolean(), z.enum(['true', 'false'])]).transform((v) => v === true || v === 'true'),
};
