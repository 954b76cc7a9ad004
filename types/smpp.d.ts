/**
 * Minimal declarations for the untyped npm package `smpp` (farhadi/node-smpp 0.5.1),
 * covering what the SMS channel and its test SMSC use. Field names follow the
 * SMPP specification, as the library does.
 */
declare module 'smpp' {
  import { EventEmitter } from 'node:events';
  import type { Server as NetServer, Socket } from 'node:net';

  namespace smpp {
    /** A decoded PDU: header fields plus every mandatory parameter and TLV by its spec name. */
    interface PDU {
      command: string;
      command_id: number;
      command_status: number;
      sequence_number: number;
      /** Parameters and TLVs; unknown TLVs appear under their numeric tag as Buffers. */
      [field: string]: unknown;
      isResponse(): boolean;
      /** `<command>_resp` with the same sequence_number (generic_nack for unknown commands). */
      response(options?: Record<string, unknown>): PDU;
      toBuffer(): Buffer;
    }
    interface PDUConstructor {
      /** A new PDU by command name, or one decoded from octets (throws on a PDU longer than maxLength). */
      new (command: string | Buffer, options?: Record<string, unknown>): PDU;
      fromBuffer(buffer: Buffer): PDU | false;
      maxLength: number;
    }

    type ResponseCallback = (pdu: PDU) => void;
    type SendCallback = (pdu: PDU) => void;
    type CommandShortcut = (
      options?: Record<string, unknown> | ResponseCallback,
      responseCallback?: ResponseCallback,
      sendCallback?: SendCallback,
    ) => boolean;

    interface Session extends EventEmitter {
      socket: Socket;
      paused: boolean;
      server?: Server;
      /** Returns false (and sends nothing) when the socket is not writable. */
      send(pdu: PDU, responseCallback?: ResponseCallback, sendCallback?: SendCallback): boolean;
      /** Stops emitting PDUs; unread bytes stay in the socket, so TCP flow control pushes back. */
      pause(): void;
      resume(): void;
      close(callback?: () => void): void;
      destroy(callback?: () => void): void;
      connect(): void;
      bind_transceiver: CommandShortcut;
      bind_receiver: CommandShortcut;
      bind_transmitter: CommandShortcut;
      submit_sm: CommandShortcut;
      deliver_sm: CommandShortcut;
      data_sm: CommandShortcut;
      enquire_link: CommandShortcut;
      unbind: CommandShortcut;
      generic_nack: CommandShortcut;
      outbind: CommandShortcut;
    }

    interface Server extends NetServer {
      sessions: Session[];
    }

    interface ConnectOptions {
      url?: string;
      host?: string;
      port?: number;
      tls?: boolean;
      auto_enquire_link_period?: number;
      [option: string]: unknown;
    }

    interface Encoding {
      match(value: string): boolean;
      encode(value: string): Buffer;
      decode(value: Buffer): string;
    }

    interface Filter {
      encode(this: PDU, value: unknown): unknown;
      decode(this: PDU, value: unknown, skipUdh?: boolean): unknown;
    }
  }

  const smpp: {
    connect(options: string | smpp.ConnectOptions, listener?: () => void): smpp.Session;
    createSession(options: string | smpp.ConnectOptions, listener?: () => void): smpp.Session;
    createServer(listener: (session: smpp.Session) => void): smpp.Server;
    createServer(options: Record<string, unknown>, listener: (session: smpp.Session) => void): smpp.Server;
    PDU: smpp.PDUConstructor;
    Session: new (options: Record<string, unknown>) => smpp.Session;
    encodings: Record<string, smpp.Encoding | undefined> & { default: string };
    filters: Record<string, smpp.Filter> & { message: smpp.Filter };
    gsmCoder: { encode(value: string, shift: number): Buffer; decode(value: Buffer, shift: number): string };
    errors: Record<string, number>;
    consts: Record<string, Record<string, number>>;
    ESM_CLASS: Record<string, number>;
    ENCODING: Record<string, number>;
    MESSAGE_STATE: Record<string, number>;
    REGISTERED_DELIVERY: Record<string, number>;
    TON: Record<string, number>;
    NPI: Record<string, number>;
    ESME_ROK: number;
    ESME_RINVCMDID: number;
    ESME_RBINDFAIL: number;
    ESME_RSYSERR: number;
    ESME_RMSGQFUL: number;
    ESME_RTHROTTLED: number;
    ESME_RX_T_APPN: number;
    ESME_RX_P_APPN: number;
    ESME_RINVDSTADR: number;
    [constant: string]: unknown;
  };

  export = smpp;
}
