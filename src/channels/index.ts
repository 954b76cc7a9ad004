import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { Channel } from '../ticket.js';
import type { ChannelAdapter } from './types.js';

type Factory = (config: Config, logger: Logger) => ChannelAdapter | null;

/**
 * Every channel, with the settings that turn it on. A channel's code, and the
 * protocol libraries it pulls in (imapflow, mailparser, nodemailer, smpp, the
 * WeChat XML parser…), is loaded only when it is on: a gateway that serves the
 * app and SMS does not carry the mail stack in memory.
 */
const CHANNELS: { channel: Channel; offBecause: (c: Config) => string | null; load: () => Promise<Factory> }[] = [
  { channel: 'app', offBecause: () => null, load: async () => (await import('./app/adapter.js')).createAppAdapter },
  { channel: 'sms', offBecause: (c) => (c.SMPP_URL ? null : 'SMPP_URL is not set'), load: async () => (await import('./sms/adapter.js')).createSmsAdapter },
  {
    channel: 'mailbox',
    offBecause: (c) => (c.IMAP_URL || c.SMTP_URL || c.MAILBOX_FORM ? null : 'IMAP_URL and SMTP_URL are not set and MAILBOX_FORM is false'),
    load: async () => (await import('./mailbox/adapter.js')).createMailboxAdapter,
  },
  {
    channel: 'wechat',
    offBecause: (c) => (c.WECHAT_TOKEN || c.WECHATY_PUPPET ? null : 'WECHAT_TOKEN and WECHATY_PUPPET are not set'),
    load: async () => (await import('./wechat/adapter.js')).createWechatAdapter,
  },
  { channel: 'weibo', offBecause: (c) => (c.WEIBO_APP_SECRET ? null : 'WEIBO_APP_SECRET is not set'), load: async () => (await import('./weibo/adapter.js')).createWeiboAdapter },
  {
    channel: 'telegram',
    offBecause: (c) => (c.TELEGRAM_BOT_TOKEN ? null : 'TELEGRAM_BOT_TOKEN is not set'),
    load: async () => (await import('./telegram/adapter.js')).createTelegramAdapter,
  },
];

/** Every channel whose settings are present; the others say once that they are off. */
export async function buildAdapters(config: Config, logger: Logger): Promise<ChannelAdapter[]> {
  const adapters: ChannelAdapter[] = [];
  for (const { channel, offBecause, load } of CHANNELS) {
    const reason = offBecause(config);
    if (reason) {
      logger.info({ channel }, `channel off: ${reason}`);
      continue;
    }
    const adapter = (await load())(config, logger);
    if (adapter) adapters.push(adapter);
  }
  return adapters;
}
