import amqp, { type ChannelModel } from 'amqplib';

export interface Tapped {
  routingKey: string;
  messageId: string | undefined;
  redelivered: boolean;
  receivedAt: number;
  body: any;
}

/**
 * A consumer on one queue that outlives broker restarts: it reconnects until
 * closed and keeps everything that arrived, so nothing consumed before the
 * broker went down is forgotten. Messages are acked after they are kept; a
 * message in flight when the connection dies comes again (counted as a
 * redelivery, not as a gateway duplicate).
 */
export class QueueTap {
  readonly messages: Tapped[] = [];
  connects = 0;
  private conn: ChannelModel | null = null;
  private closed = false;
  private loop: Promise<void> | null = null;

  constructor(
    private readonly url: string,
    private readonly queue: string,
  ) {}

  start(): this {
    this.loop ??= this.run();
    return this;
  }

  private async run(): Promise<void> {
    while (!this.closed) {
      let conn: ChannelModel | null = null;
      try {
        conn = await amqp.connect(this.url);
        this.conn = conn;
        conn.on('error', () => {});
        const gone = new Promise<void>((resolve) => conn!.once('close', () => resolve()));
        const ch = await conn.createChannel();
        ch.on('error', () => {});
        // The gateway declares the topology; until it has, this throws and we retry.
        await ch.checkQueue(this.queue);
        await ch.prefetch(500);
        this.connects++;
        await ch.consume(this.queue, (m) => {
          if (!m) return;
          let body: unknown;
          try {
            body = JSON.parse(m.content.toString('utf8'));
          } catch {
            body = { unparsable: m.content.toString('utf8') };
          }
          this.messages.push({
            routingKey: m.fields.routingKey,
            messageId: m.properties.messageId as string | undefined,
            redelivered: m.fields.redelivered,
            receivedAt: Date.now(),
            body,
          });
          try {
            ch.ack(m);
          } catch {
            // channel gone: the broker redelivers it
          }
        });
        await gone;
      } catch {
        await conn?.close().catch(() => {});
      }
      this.conn = null;
      if (!this.closed) await new Promise((r) => setTimeout(r, 300));
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.conn?.close().catch(() => {});
    await this.loop?.catch(() => {});
  }
}
