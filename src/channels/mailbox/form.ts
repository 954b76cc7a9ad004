import type { Request, Response, Router } from 'express';
import busboy from 'busboy';
import type { Logger } from 'pino';
import type { Config } from '../../config.js';
import type { Clock } from '../../clock.js';
import type { InboundAttachment, Intake, Ticket } from '../types.js';
import { GatewayError, errorMessage, isTransient } from '../../errors.js';
import { FormInput, formToInbound } from './form-input.js';
import { cleanText } from '../../normalize/text.js';
import { CSRF_COOKIE, RateLimiter, checkCsrf, checkLookupCode, csrfToken, lookupCode, newNonce, normalizeCode, readCookie } from './security.js';
import { formPage, lookupFormPage, messagePage, statusPage, successPage, type FormValues } from './pages.js';
// The look-up page and the status answer on the message channels use the same words.
import { STATE_WORDS as STATE_WORD_OF } from '../status-query.js';

const STATE_WORDS: Record<string, string> = STATE_WORD_OF;

/**
 * The mayor's-mailbox web form: GET /mailbox (form), POST /mailbox (submit →
 * mailbox-policy ticket), GET /mailbox/status (look-up by number + code).
 * Works without JavaScript; multipart parsed by busboy with hard limits.
 */

/** Look-ups the core's intake offers beyond the `Intake` interface (checked at run time). */
interface TicketStatusLike {
  state: string;
  respondBy: string;
  breached: boolean;
  replies: { text: string; state?: string; at: string; sentAt?: string | null }[];
}
interface LookupIntake {
  getTicketByNumber?(number: string): Ticket | null | Promise<Ticket | null>;
  ticketStatus?(id: string): TicketStatusLike | null | Promise<TicketStatusLike | null>;
}

export interface FormDeps {
  intake: Intake;
  config: Config;
  logger: Logger;
  clock: Clock;
  /** HMAC key for look-up codes and CSRF tokens (resolved at start). */
  secret: () => string;
  /** False once the adapter is stopping. */
  accepting: () => boolean;
}


const FIELD_LIMIT = 64 * 1024;

/** 10MB, 48KB: how a size limit is shown to citizens. */
export function sizeText(bytes: number): string {
  return bytes >= 1048576 ? `${Math.floor(bytes / 1048576)}MB` : `${Math.max(1, Math.floor(bytes / 1024))}KB`;
}

interface ParsedBody {
  fields: Record<string, string>;
  files: InboundAttachment[];
  error: { status: number; field: string; message: string } | null;
}

function readMultipart(req: Request, limits: { maxFiles: number; maxFileBytes: number; maxTotalBytes: number }): Promise<ParsedBody> {
  return new Promise((resolve, reject) => {
    let bb: busboy.Busboy;
    try {
      bb = busboy({
        headers: req.headers,
        // Browsers send file names and fields as UTF-8 (the page is UTF-8).
        defCharset: 'utf8',
        defParamCharset: 'utf8',
        limits: { fields: 20, fieldSize: FIELD_LIMIT, files: limits.maxFiles, fileSize: limits.maxFileBytes, parts: 20 + limits.maxFiles },
      });
    } catch (err) {
      resolve({ fields: {}, files: [], error: { status: 415, field: '_form', message: `不支持的提交格式：${errorMessage(err)}` } });
      return;
    }
    const fields: Record<string, string> = {};
    const files: InboundAttachment[] = [];
    let total = 0;
    let error: ParsedBody['error'] = null;
    const fail = (status: number, field: string, message: string) => {
      error ??= { status, field, message };
    };
    bb.on('field', (name, value, info) => {
      if (info.valueTruncated) fail(413, name, '内容过长');
      if (!(name in fields)) fields[name] = value;
    });
    bb.on('file', (_name, stream, info) => {
      const chunks: Buffer[] = [];
      let size = 0;
      stream.on('data', (c: Buffer) => {
        size += c.length;
        total += c.length;
        if (total > limits.maxTotalBytes) fail(413, 'attachments', '附件总大小超过限制');
        else if (!error) chunks.push(c);
      });
      stream.on('limit', () => fail(413, 'attachments', `单个附件不能超过${sizeText(limits.maxFileBytes)}`));
      stream.on('end', () => {
        // An empty file input still sends a part with no name and no bytes.
        if (!info.filename && size === 0) return;
        if (error) return;
        files.push({ fileName: (info.filename ?? 'attachment').replace(/[\\/]/g, '_').slice(0, 200) || 'attachment', mimeType: info.mimeType || 'application/octet-stream', data: Buffer.concat(chunks) });
      });
    });
    bb.on('filesLimit', () => fail(413, 'attachments', `附件最多${limits.maxFiles}个`));
    bb.on('fieldsLimit', () => fail(413, '_form', '字段过多'));
    bb.on('partsLimit', () => fail(413, '_form', '提交内容过多'));
    bb.on('error', (err: unknown) => reject(err));
    bb.on('close', () => resolve({ fields, files, error }));
    req.pipe(bb);
  });
}

function sendHtml(res: Response, status: number, html: string): void {
  res.status(status);
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('Referrer-Policy', 'no-referrer');
  // No script at all: the pages work without it, and nothing injected can run.
  res.setHeader('Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'");
  res.send(html);
}

function formatTime(iso: string, timeZone: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-GB', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', hour12: false })
      .formatToParts(d)
      .map((p) => [p.type, p.value]),
  );
  return `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute}`;
}

export function mountForm(router: Router, deps: FormDeps): { limiter: RateLimiter } {
  const { config, logger, clock } = deps;
  const limiter = new RateLimiter(config.FORM_RATE_LIMIT);
  const lookupLimiter = new RateLimiter(config.FORM_RATE_LIMIT * 3);
  // The whole submission is an HTTP body (HTTP_BODY_LIMIT); a file also has to fit the attachment and mail limits.
  const maxTotalBytes = Math.min(config.HTTP_BODY_LIMIT, config.MAIL_MAX_BYTES);
  const maxFileBytes = Math.min(config.ATTACHMENT_MAX_BYTES, maxTotalBytes);

  const base = (config.PUBLIC_URL ?? '').replace(/\/+$/, '');
  // Without SMTP nothing is mailed: the pages must not promise an e-mail answer.
  const mailReplies = Boolean(config.SMTP_URL);

  /** Reuse the visitor's CSRF cookie, or set a new one; returns the field value. */
  const csrfFor = (req: Request, res: Response): string => {
    let value = readCookie(req.headers.cookie, CSRF_COOKIE);
    if (!value || !/^[A-Za-z0-9_-]{16,64}$/.test(value)) {
      value = newNonce();
      res.append('Set-Cookie', `${CSRF_COOKIE}=${value}; Path=/mailbox; HttpOnly; SameSite=Strict${req.secure ? '; Secure' : ''}`);
    }
    return csrfToken(deps.secret(), value);
  };

  const renderForm = (req: Request, res: Response, status: number, values: FormValues, errors: Record<string, string>, nonce?: string) => {
    sendHtml(
      res,
      status,
      formPage({
        values,
        errors,
        csrf: csrfFor(req, res),
        nonce: nonce && /^[A-Za-z0-9_-]{16,64}$/.test(nonce) ? nonce : newNonce(),
        maxFiles: config.FORM_MAX_FILES,
        maxFileSize: sizeText(maxFileBytes),
        mailReplies,
      }),
    );
  };

  const limited = (req: Request, res: Response, which: RateLimiter): boolean => {
    const wait = which.hit(req.ip ?? 'unknown', clock.now());
    if (wait === null) return false;
    res.setHeader('Retry-After', String(wait));
    sendHtml(res, 429, messagePage('提交过于频繁', `请${wait}秒后再试。`, null));
    return true;
  };

  router.get('/mailbox', (req, res) => {
    renderForm(req, res, 200, {}, {});
  });

  router.post('/mailbox', async (req, res) => {
    if (!deps.accepting()) {
      res.setHeader('Retry-After', '5');
      sendHtml(res, 503, messagePage('系统维护中', '系统正在维护，请稍后再提交。'));
      return;
    }
    if (limited(req, res, limiter)) return;
    const type = (req.headers['content-type'] ?? '').toLowerCase();
    if (!type.startsWith('multipart/form-data') && !type.startsWith('application/x-www-form-urlencoded')) {
      sendHtml(res, 415, messagePage('无法处理', '不支持的提交格式，请使用写信页面提交。'));
      return;
    }
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > maxTotalBytes + 64 * 1024) {
      res.setHeader('Connection', 'close');
      sendHtml(res, 413, messagePage('附件过大', '提交的内容超过大小限制，请减少附件后重试。'));
      return;
    }

    let body: ParsedBody;
    try {
      body = await readMultipart(req, { maxFiles: config.FORM_MAX_FILES, maxFileBytes, maxTotalBytes });
    } catch (err) {
      logger.info({ err: errorMessage(err) }, 'web form body could not be parsed');
      sendHtml(res, 400, messagePage('提交失败', '提交的内容无法识别，请返回重新填写。'));
      return;
    }
    const values: FormValues = {
      name: body.fields.name,
      phone: body.fields.phone,
      email: body.fields.email,
      subject: body.fields.subject,
      content: body.fields.content,
    };
    if (!checkCsrf(deps.secret(), readCookie(req.headers.cookie, CSRF_COOKIE), body.fields.csrf)) {
      renderForm(req, res, 403, values, { _form: '页面已过期或来源无法验证，请确认内容后重新提交（需要启用Cookie）。' }, body.fields.nonce);
      return;
    }
    // A file input cannot be filled in again by the server: say so when files were dropped.
    const refile = (errors: Record<string, string>) =>
      body.files.length > 0 && !errors.attachments ? { ...errors, attachments: '请重新选择附件。' } : errors;
    if (body.error) {
      renderForm(req, res, body.error.status, values, { [body.error.field]: body.error.message }, body.fields.nonce);
      return;
    }
    const parsed = FormInput.safeParse(body.fields);
    if (!parsed.success) {
      const errors: Record<string, string> = {};
      for (const issue of parsed.error.issues) {
        const k = String(issue.path[0] ?? '_form');
        const key = k === 'nonce' || k === 'csrf' ? '_form' : k;
        errors[key] ??= issue.message;
      }
      renderForm(req, res, 400, values, refile(errors), body.fields.nonce);
      return;
    }

    const inbound = formToInbound(parsed.data, body.files, new Date(clock.now()));
    try {
      const result = await deps.intake.accept(inbound);
      if (result.status === 'rejected' || result.status === 'query') {
        renderForm(req, res, 400, values, { _form: result.receipt ?? '提交未成功，请补充内容后重试。' }, body.fields.nonce);
        return;
      }
      const ticket = result.ticket;
      if (result.status === 'duplicate' && ticket.subject !== cleanText(parsed.data.subject)) {
        // Same nonce, different letter: not a double submit. Show nothing of the
        // earlier ticket (its code would let this sender read it).
        renderForm(req, res, 409, values, { _form: '该表单已经提交过，请在新打开的写信页面重新填写。' });
        return;
      }
      // The page itself is the receipt: the citizen sees the number now.
      await deps.intake.acknowledged(ticket.id, 'web').catch((err: unknown) => logger.warn({ err: errorMessage(err), ticketId: ticket.id }, 'could not record the web receipt'));
      const code = lookupCode(deps.secret(), ticket.id);
      sendHtml(
        res,
        result.status === 'created' ? 201 : 200,
        successPage({
          number: ticket.number,
          code,
          duplicate: result.status !== 'created',
          receipt: result.receipt,
          statusUrl: `${base}/mailbox/status?number=${encodeURIComponent(ticket.number)}&code=${encodeURIComponent(code)}`,
        }),
      );
    } catch (err) {
      const transient = isTransient(err);
      logger.warn({ err: errorMessage(err), code: err instanceof GatewayError ? err.code : undefined }, 'web form submission not stored');
      if (transient) res.setHeader('Retry-After', '5');
      renderForm(req, res, transient ? 503 : 400, values, { _form: transient ? '系统繁忙，您的信件尚未提交，请稍后再试。' : '提交失败，请检查内容后重试。' }, body.fields.nonce);
    }
  });

  router.get('/mailbox/status', async (req, res) => {
    const q = req.query as Record<string, unknown>;
    const number = typeof q.number === 'string' ? q.number.trim() : '';
    const code = typeof q.code === 'string' ? normalizeCode(q.code) : '';
    if (!number && !code) {
      sendHtml(res, 200, lookupFormPage({ mailReplies }));
      return;
    }
    if (limited(req, res, lookupLimiter)) return;
    const notFound = () => sendHtml(res, 404, lookupFormPage({ number, code, error: '未找到该工单，或查询码不正确。', mailReplies }));
    if (!/^\d{8}-\d{6,}$/.test(number) || !code) {
      notFound();
      return;
    }
    const lookup = deps.intake as Intake & LookupIntake;
    if (typeof lookup.getTicketByNumber !== 'function') {
      sendHtml(res, 503, messagePage('暂不可用', '办理进度查询暂不可用，请稍后再试。'));
      return;
    }
    try {
      const ticket = await lookup.getTicketByNumber(number);
      // Same answer for "no such number" and "wrong code": numbers are guessable, codes are not.
      if (!ticket || !checkLookupCode(deps.secret(), ticket.id, code)) {
        notFound();
        return;
      }
      const status = typeof lookup.ticketStatus === 'function' ? await lookup.ticketStatus(ticket.id) : null;
      const tz = config.TIMEZONE;
      sendHtml(
        res,
        200,
        statusPage({
          number: ticket.number,
          subject: ticket.subject,
          content: ticket.content,
          receivedAt: formatTime(ticket.receivedAt, tz),
          respondBy: formatTime(status?.respondBy ?? ticket.deadline.respondBy, tz),
          state: STATE_WORDS[status?.state ?? 'received'] ?? status?.state ?? '已受理',
          breached: status?.breached ?? false,
          // Every answer the hotline gave, also while its mail is still on the way.
          replies: (status?.replies ?? []).map((r) => ({ text: r.text, at: formatTime(r.sentAt ?? r.at, tz) })),
          attachments: ticket.attachments,
        }),
      );
    } catch (err) {
      logger.warn({ err: errorMessage(err) }, 'ticket look-up failed');
      res.setHeader('Retry-After', '5');
      sendHtml(res, 503, messagePage('暂不可用', '办理进度查询暂不可用，请稍后再试。'));
    }
  });

  return { limiter };
}
