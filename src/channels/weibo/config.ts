import { z } from 'zod';
import { optionalString } from '../../config-types.js';

/** Weibo fans-service platform (粉丝服务平台). */
export const weiboConfig = {
  /** App Secret of the APPKEY entered in developer mode: signs the push; absent = channel off. */
  WEIBO_APP_SECRET: optionalString(),
  WEIBO_ACCESS_TOKEN: optionalString(),
  WEIBO_API_URL: z.string().url(),
};
