import { duration, optionalString } from '../../config-types.js';
import { z } from 'zod';

/** WeChat official account (公众号) push + API, and the optional Wechaty intake. */
export const wechatConfig = {
  /** Token entered in the official-account console; absent = channel off. */
  WECHAT_TOKEN: optionalString(),
  WECHAT_APP_ID: optionalString(),
  WECHAT_APP_SECRET: optionalString(),
  /** 43-character EncodingAESKey for safe mode (安全模式). */
  WECHAT_ENCODING_AES_KEY: optionalString(),
  WECHAT_API_URL: z.string().url(),
  /** Wechaty puppet module name, e.g. `wechaty-puppet-service`; absent = off. */
  WECHATY_PUPPET: optionalString(),
  WECHATY_PUPPET_TOKEN: optionalString(),
  /** Welcome text sent on subscribe; empty = the built-in zh-CN welcome. */
  WECHAT_WELCOME: optionalString(),
  /**
   * Longest wait for a picture or voice download (token included) before the ticket
   * is stored without it: WeChat gives up on an answer after 5 s.
   */
  WECHAT_MEDIA_TIMEOUT: duration(),
};
