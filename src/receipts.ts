import type { Config } from './config.js';
import type { Ticket } from './ticket.js';

/**
 * Texts sent to citizens. Chinese unless the citizen wrote in another language,
 * then English (the hotline's foreign-language seats answer in the citizen's own).
 */

const EMERGENCY_ZH: Record<string, string> = {
  '119': '【12345】如遇火情或燃气泄漏，请立即拨打119火警电话！您的信息已登记，工单号{number}。',
  '110': '【12345】如正在发生违法犯罪或人身安全受到威胁，请立即拨打110报警！您的信息已登记，工单号{number}。',
  '120': '【12345】如有人受伤或突发疾病，请立即拨打120急救电话！您的信息已登记，工单号{number}。',
  '122': '【12345】如发生交通事故，请立即拨打122交通事故报警电话（有人受伤请拨打120）！您的信息已登记，工单号{number}。',
};

const EMERGENCY_EN: Record<string, string> = {
  '119': '[12345] Fire or gas leak: call 119 now! Your message is recorded as ticket {number}.',
  '110': '[12345] Crime or danger to life: call 110 now! Your message is recorded as ticket {number}.',
  '120': '[12345] Injury or medical emergency: call 120 now! Your message is recorded as ticket {number}.',
  '122': '[12345] Traffic accident: call 122 now (120 if anyone is hurt)! Your message is recorded as ticket {number}.',
};

function deadlineWords(ms: number, zh: boolean): string {
  const h = ms / 3_600_000;
  const m = ms / 60_000;
  if (h >= 1 && Number.isInteger(h)) return zh ? `${h}小时` : `${h} hour${h === 1 ? '' : 's'}`;
  if (m >= 1 && Number.isInteger(m)) return zh ? `${m}分钟` : `${m} minute${m === 1 ? '' : 's'}`;
  const s = Math.round(ms / 1000);
  return zh ? `${s}秒` : `${s} seconds`;
}

function isChinese(ticket: Pick<Ticket, 'language'>): boolean {
  return ticket.language === 'zh' || ticket.language === 'und';
}

export function receiptText(config: Config, ticket: Ticket, policy: 'message' | 'mailbox'): string {
  const zh = isChinese(ticket);
  if (ticket.emergency) {
    return (zh ? EMERGENCY_ZH : EMERGENCY_EN)[ticket.emergency.service]!.replace('{number}', ticket.number);
  }
  const ms = policy === 'mailbox' ? config.DEADLINE_MAILBOX : config.DEADLINE_MESSAGE;
  return (zh ? config.RECEIPT_TEMPLATE_ZH : config.RECEIPT_TEMPLATE_EN)
    .replaceAll('{number}', ticket.number)
    .replaceAll('{deadline}', deadlineWords(ms, zh));
}

export function followupText(_config: Config, ticket: Ticket): string {
  return isChinese(ticket)
    ? `【12345】已收到您对工单${ticket.number}的补充信息，我们会一并处理。`
    : `[12345] We have added your message to ticket ${ticket.number}.`;
}
