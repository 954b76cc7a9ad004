import { z } from 'zod';
import { boolean, duration, optionalUrl, positiveInt } from '../../config-types.js';

/** SMS channel settings (SMPP 3.4 transceiver bind). */
export const smsConfig = {
  /** `smpp://system_id:password@host:port`; absent = channel off. */
  SMPP_URL: optionalUrl('smpp', 'ssmpp'),
  /** The hotline's SMS number, digits only; extensions after it are kept in `source.extension`. */
  SMS_SERVICE_NUMBER: z.string().regex(/^\d+$/, 'expected digits only'),
  /** Same sender, destination, bytes and reference within this window = the same message. */
  SMS_DEDUPE_WINDOW: duration(),
  /** A long message with missing parts is published with `incomplete: true` after this. */
  SMS_REASSEMBLY_TIMEOUT: duration(),
  /** Outgoing submit_sm per second. */
  SMS_TPS: positiveInt(),
  /** Unacknowledged submit_sm at most. */
  SMS_WINDOW: positiveInt(),
  /** deliver_sm_resp command_status when the gateway cannot store (0x64 ESME_RX_T_APPN; some SMSCs retry only 0x08/0x14/0x58). */
  SMS_RETRY_STATUS: z.coerce.number().int().min(1).max(0xffff),
  /** enquire_link period; a link that leaves one unanswered for a whole period is dropped and rebuilt. */
  SMS_ENQUIRE_LINK: duration(),
  /** First wait before reconnecting after a drop, unbind or failed bind; doubles up to SMS_RECONNECT_MAX. */
  SMS_RECONNECT_MIN: duration(),
  SMS_RECONNECT_MAX: duration(),
  /**
   * TCP_NODELAY on the bind. Removes the ≈40 ms stalls of Nagle meeting the SMSC's delayed
   * ACK when the SMSC sets it too; against an SMSC that keeps Nagle on, answers stall more
   * often with it (measured), so such a link turns it off.
   */
  SMS_TCP_NODELAY: boolean(),
};
