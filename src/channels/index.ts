import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { ChannelAdapter } from './types.js';
import { createAppAdapter } from './app/adapter.js';
import { createSmsAdapter } from './sms/adapter.js';
import { createMailboxAdapter } from './mailbox/adapter.js';
import { createWechatAdapter } from './wechat/adapter.js';
import { createWeiboAdapter } from './weibo/adapter.js';
import { createTelegramAdapter } from './telegram/adapter.js';

const FACTORIES = [
  createAppAdapter,
  createSmsAdapter,
  createMailboxAdapter,
  createWechatAdapter,
  createWeiboAdapter,
  createTelegramAdapter,
] as const;

/** Every channel whose settings are present; the others say once that they are off. */
export function buildAdapters(config: Config, logger: Logger): ChannelAdapter[] {
  return FACTORIES.map((create) => create(config, logger)).filter((a): a is ChannelAdapter => a !== null);
}
