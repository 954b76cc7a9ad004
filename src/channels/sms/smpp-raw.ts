import smpp from 'smpp';

let installed = false;

/**
 * Make node-smpp hand over message bytes untouched, in both directions.
 *
 * Out of the box, smpp 0.5.1 decodes short_message/message_payload itself: it reads
 * data_coding 1 (IA5) with the GSM table, masks data_coding with 0x0F, applies GSM
 * shift tables to any coding when a UDH names one, strips the UDHL byte, and turns
 * UCS-2 into a string per segment, which breaks surrogate pairs split between
 * segments. It also re-encodes strings on the way out. The channel needs the
 * original octets (to join segments before decoding and to hash them for dedupe),
 * so:
 *  - the message filter's decode returns the Buffer as received (UDH included);
 *  - the text encodings are removed, so nothing is re-encoded: the adapter always
 *    passes Buffers with an explicit data_coding.
 * The change is process-wide and idempotent; everything here that uses smpp
 * (the adapter and the test SMSC) expects raw bytes.
 */
export function useRawSmppMessages(): void {
  if (installed) return;
  installed = true;
  smpp.filters.message.decode = function rawMessage(value: unknown): unknown {
    return value;
  };
  delete smpp.encodings.ASCII;
  delete smpp.encodings.LATIN1;
  delete smpp.encodings.UCS2;
}
