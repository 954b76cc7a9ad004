import { z } from 'zod';
import { duration, optionalString } from '../../config-types.js';

/** Telegram bot. */
export const telegramConfig = {
  /** Bot token; absent = channel off. */
  TELEGRAM_BOT_TOKEN: optionalString(),
  /** When set: webhook on POST /telegram/webhook checked by X-Telegram-Bot-Api-Secret-Token; else long polling. */
  TELEGRAM_WEBHOOK_SECRET: optionalString(),
  TELEGRAM_API_URL: z.string().url(),
  /** Long-poll wait per getUpdates call (whole seconds are sent to Telegram). */
  TELEGRAM_POLL_TIMEOUT: duration(),
  /** Longest wait for a photo download before the ticket is stored without it. */
  TELEGRAM_MEDIA_TIMEOUT: duration(),
};
