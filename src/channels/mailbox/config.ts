import { z } from 'zod';
import { duration, optionalString, optionalUrl, positiveInt } from '../../config-types.js';

/** Mayor's mailbox settings (IMAP in, SMTP out, web form). */
export const mailboxConfig = {
  /** `imap(s)://user:pass@host:port/INBOX`; absent = IMAP intake off. */
  IMAP_URL: optionalUrl('imap', 'imaps'),
  /** `smtp(s)://user:pass@host:port` for receipts and replies; absent = no mail out. */
  SMTP_URL: optionalUrl('smtp', 'smtps'),
  /** From address of receipts and replies. */
  MAILBOX_ADDRESS: optionalString().refine((v) => v === undefined || z.email().safeParse(v).success, 'expected an e-mail address'),
  /** Display name on receipts and replies. */
  MAILBOX_FROM_NAME: z.string().min(1),
  /** Largest mail accepted, in bytes; larger ones go to intake.rejected. */
  MAIL_MAX_BYTES: positiveInt(),
  /** Web form submissions (and status look-ups) per IP per minute. */
  FORM_RATE_LIMIT: positiveInt(),
  /** Files one web form submission may carry. */
  FORM_MAX_FILES: positiveInt(),
  /** The web form at GET /mailbox is served. */
  MAILBOX_FORM: z.union([z.boolean(), z.enum(['true', 'false'])]).transform((v) => v === true || v === 'true'),
  /**
   * Key of the HMAC that derives a ticket's look-up code (and signs form tokens).
   * Absent = one is generated once and kept in the gateway's state.
   */
  MAILBOX_LOOKUP_SECRET: optionalString(),
  /** Safety poll of the IMAP mailbox besides IDLE (and the interval when the server has no IDLE). */
  IMAP_POLL_INTERVAL: duration(),
  /** Longest wait between IMAP reconnect attempts. */
  IMAP_RECONNECT_MAX: duration(),
};
