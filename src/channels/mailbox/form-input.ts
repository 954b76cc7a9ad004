import { z } from 'zod';
import type { Inbound, InboundAttachment } from '../types.js';

/** The mayor's-mailbox web form: its fields and the Inbound a submission becomes. */

export const CHANNEL = 'mailbox' as const;

/** Internationalised addresses (张三@例子.中国) are valid senders too (RFC 6531). */
export const Email = () => z.email({ pattern: z.regexes.unicodeEmail, message: 'expected an e-mail address' });

const optionalTrimmed = (max: number) =>
  z
    .string()
    .optional()
    .transform((v) => (v === undefined ? undefined : v.trim()))
    .pipe(z.string().max(max).optional())
    .transform((v) => (v ? v : null));

export const FormInput = z.object({
  name: optionalTrimmed(50),
  phone: optionalTrimmed(20).refine((v) => v === null || /^\+?[0-9][0-9 \-()]{4,19}$/.test(v), { message: '电话号码格式不正确' }),
  email: optionalTrimmed(254).refine((v) => v === null || Email().safeParse(v).success, { message: '电子邮箱格式不正确' }),
  subject: z.string().trim().min(1, { message: '请填写标题' }).max(200, { message: '标题不能超过200字' }),
  content: z.string().trim().min(1, { message: '请填写诉求内容' }).max(10_000, { message: '内容不能超过10000字' }),
  /** One per rendered form: a double submit carries the same nonce and maps to the same ticket. */
  nonce: z.string().regex(/^[A-Za-z0-9_-]{16,64}$/, { message: '表单已失效，请刷新页面后重新提交' }),
});
export type FormInput = z.infer<typeof FormInput>;

export function formToInbound(input: FormInput, attachments: InboundAttachment[], submittedAt: Date): Inbound {
  const channelUserId = input.email?.toLowerCase() ?? (input.phone ? input.phone.replace(/[^\d+]/g, '') : `web:${input.nonce}`);
  const raw = JSON.stringify({
    form: 'mailbox',
    name: input.name,
    phone: input.phone,
    email: input.email,
    subject: input.subject,
    content: input.content,
    nonce: input.nonce,
    attachments: attachments.map((a) => ({ fileName: a.fileName, mimeType: a.mimeType, size: a.data.length })),
  });
  return {
    channel: CHANNEL,
    dedupeKey: `form:${input.nonce}`,
    channelMessageIds: [`form:${input.nonce}`],
    sentAt: submittedAt,
    citizen: {
      channelUserId,
      phone: input.phone ? input.phone.replace(/[^\d+]/g, '') : null,
      email: input.email,
      name: input.name,
    },
    subject: input.subject,
    content: input.content,
    attachments,
    location: null,
    incomplete: false,
    source: { via: 'web', messageId: null, inReplyTo: null, references: [], form: true },
    raw,
    // No threadRefs: the form is anonymous, so a ticket number typed into the
    // subject must not attach this text to somebody else's ticket.
    threadRefs: [],
  };
}
