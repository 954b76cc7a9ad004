/**
 * Server-rendered pages of the mayor's mailbox (市长信箱): zh-CN, no JavaScript,
 * one form per page, every field labelled, errors listed at the top (role=alert)
 * and linked to their fields. Pure functions: data in, HTML out.
 */

export function esc(v: unknown): string {
  return String(v ?? '')
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

const STYLE = `
*{box-sizing:border-box}
body{margin:0;font-family:"PingFang SC","Noto Sans CJK SC","Microsoft YaHei",sans-serif;font-size:18px;line-height:1.6;color:#1a1a1a;background:#f4f6f8}
header{background:#b71c1c;color:#fff;padding:.75rem 1rem}
header a{color:#fff}
header p{margin:0;font-size:1.25rem;font-weight:bold}
main{max-width:44rem;margin:1.5rem auto;background:#fff;padding:1.5rem;border-radius:6px}
h1{font-size:1.6rem;margin-top:0}
label{display:block;font-weight:bold;margin-top:1rem}
.hint{display:block;font-weight:normal;color:#4a4a4a;font-size:.95rem}
input,textarea{width:100%;font:inherit;padding:.5rem;border:2px solid #555;border-radius:4px;margin-top:.25rem}
input[type=file]{border:none;padding:.25rem 0}
textarea{min-height:12rem}
input:focus,textarea:focus,button:focus,a:focus{outline:3px solid #ffbf47;outline-offset:1px}
[aria-invalid=true]{border-color:#b00020}
.field-error{color:#b00020;font-weight:bold;display:block}
button{margin-top:1.5rem;font:inherit;font-weight:bold;padding:.6rem 2rem;background:#b71c1c;color:#fff;border:none;border-radius:4px;cursor:pointer}
.alert{border:3px solid #b00020;padding:.75rem 1rem;margin-bottom:1rem}
.alert h2{margin:0;font-size:1.2rem}
.ok{border:3px solid #1b5e20;padding:.75rem 1rem;margin-bottom:1rem}
.number{font-size:1.5rem;font-weight:bold;letter-spacing:.05em}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.4rem 1rem}
dt{font-weight:bold}
dd{margin:0;white-space:pre-wrap;word-break:break-word}
ol.replies li{margin-bottom:1rem;white-space:pre-wrap}
footer{max-width:44rem;margin:0 auto 2rem;color:#4a4a4a;font-size:.9rem;padding:0 1rem}
`;

export function layout(title: string, body: string): string {
  return `<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)} - 12345市长信箱</title>
<style>${STYLE}</style>
</head>
<body>
<header><p><a href="/mailbox">12345 市长信箱</a></p></header>
<main id="main">
${body}
</main>
<footer>紧急情况请直接拨打 110（报警）、119（火警）、120（急救）、122（交通事故）。</footer>
</body>
</html>`;
}

export interface FormValues {
  name?: string;
  phone?: string;
  email?: string;
  subject?: string;
  content?: string;
}

export interface FormPageData {
  values: FormValues;
  /** Field name → message. `_form` for errors not tied to a field. */
  errors: Record<string, string>;
  csrf: string;
  nonce: string;
  maxFiles: number;
  /** Shown as is, e.g. `10MB`. */
  maxFileSize: string;
  /** SMTP is configured: receipts and answers also go to the address given. Without it, only the status page has them. */
  mailReplies: boolean;
}

const FIELD_LABELS: Record<string, string> = {
  name: '姓名',
  phone: '联系电话',
  email: '电子邮箱',
  subject: '标题',
  content: '诉求内容',
  attachments: '附件',
};

function field(id: string, label: string, hint: string, control: string, error?: string): string {
  const hintId = `${id}-hint`;
  const errId = `${id}-error`;
  return `<label for="${id}">${esc(label)}<span class="hint" id="${hintId}">${esc(hint)}</span></label>
${error ? `<span class="field-error" id="${errId}">${esc(error)}</span>` : ''}
${control.replace('%DESCRIBEDBY%', error ? `${hintId} ${errId}` : hintId).replace('%INVALID%', error ? ' aria-invalid="true"' : '')}`;
}

export function formPage(d: FormPageData): string {
  const v = d.values;
  const e = d.errors;
  const errorList = Object.entries(e);
  const summary = errorList.length
    ? `<div class="alert" role="alert" tabindex="-1" id="error-summary"><h2>提交未成功，请修改以下内容：</h2><ul>${errorList
        .map(([k, msg]) => (k === '_form' ? `<li>${esc(msg)}</li>` : `<li><a href="#${esc(k)}">${esc(FIELD_LABELS[k] ?? k)}：${esc(msg)}</a></li>`))
        .join('')}</ul></div>`
    : '';
  return layout(
    '写信',
    `<h1>给市长写信</h1>
<p>您的来信将生成工单，我们将在24小时内答复。提交后您会得到工单号和查询码，可凭此查询办理进度${d.mailReplies ? '' : '和答复'}。</p>
${summary}
<form method="post" action="/mailbox" enctype="multipart/form-data" accept-charset="utf-8">
<input type="hidden" name="csrf" value="${esc(d.csrf)}">
<input type="hidden" name="nonce" value="${esc(d.nonce)}">
${field('name', '姓名（选填）', '可不填写真实姓名。', `<input id="name" name="name" type="text" maxlength="50" autocomplete="name" value="${esc(v.name)}" aria-describedby="%DESCRIBEDBY%"%INVALID%>`, e.name)}
${field('phone', '联系电话（选填）', '便于工作人员联系您核实情况。', `<input id="phone" name="phone" type="tel" maxlength="20" autocomplete="tel" inputmode="tel" value="${esc(v.phone)}" aria-describedby="%DESCRIBEDBY%"%INVALID%>`, e.phone)}
${field('email', '电子邮箱（选填）', d.mailReplies ? '填写后，受理回执和答复也会发送到此邮箱。' : '便于工作人员联系您。答复不通过邮件发送，请凭工单号和查询码在办理进度查询页面查看。', `<input id="email" name="email" type="email" maxlength="254" autocomplete="email" value="${esc(v.email)}" aria-describedby="%DESCRIBEDBY%"%INVALID%>`, e.email)}
${field('subject', '标题（必填）', '一句话概括您的诉求，不超过200字。', `<input id="subject" name="subject" type="text" maxlength="200" required value="${esc(v.subject)}" aria-describedby="%DESCRIBEDBY%"%INVALID%>`, e.subject)}
${field('content', '诉求内容（必填）', '请写明时间、地点和具体事项，不超过10000字。', `<textarea id="content" name="content" maxlength="10000" required aria-describedby="%DESCRIBEDBY%"%INVALID%>${esc(v.content)}</textarea>`, e.content)}
${field('attachments', '附件（选填）', `可上传照片或文件，最多${d.maxFiles}个，每个不超过${d.maxFileSize}。`, `<input id="attachments" name="attachments" type="file" multiple aria-describedby="%DESCRIBEDBY%"%INVALID%>`, e.attachments)}
<button type="submit">提交</button>
</form>
<p><a href="/mailbox/status">查询已提交信件的办理进度</a></p>`,
  );
}

export interface SuccessPageData {
  number: string;
  code: string;
  statusUrl: string;
  duplicate: boolean;
  receipt: string;
}

export function successPage(d: SuccessPageData): string {
  return layout(
    '提交成功',
    `<h1>提交成功</h1>
<div class="ok" role="status">
<p>${d.duplicate ? '此信件已提交过，以下是它的工单信息。' : '您的来信已受理。'}</p>
<p>工单号：<span class="number" id="ticket-number">${esc(d.number)}</span></p>
<p>查询码：<span class="number" id="lookup-code">${esc(d.code)}</span></p>
</div>
<p>${esc(d.receipt)}</p>
<p>请记下工单号和查询码，凭此可查询办理进度和答复。</p>
<p><a href="${esc(d.statusUrl)}" id="status-link">查询办理进度</a></p>
<p><a href="/mailbox">再写一封信</a></p>`,
  );
}

export function lookupFormPage(d: { number?: string; code?: string; error?: string; mailReplies: boolean }): string {
  return layout(
    '办理进度查询',
    `<h1>办理进度查询</h1>
${d.error ? `<div class="alert" role="alert"><h2>${esc(d.error)}</h2></div>` : ''}
<form method="get" action="/mailbox/status">
${field('number', '工单号', '例如 20261123-000001', `<input id="number" name="number" type="text" required maxlength="20" inputmode="numeric" value="${esc(d.number)}" aria-describedby="%DESCRIBEDBY%"%INVALID%>`)}
${field('code', '查询码', `提交信件后页面上显示的8位查询码${d.mailReplies ? '，也写在受理回执邮件里' : ''}。`, `<input id="code" name="code" type="text" required maxlength="12" autocapitalize="characters" autocomplete="off" value="${esc(d.code)}" aria-describedby="%DESCRIBEDBY%"%INVALID%>`)}
<button type="submit">查询</button>
</form>`,
  );
}

export interface StatusPageData {
  number: string;
  subject: string | null;
  content: string;
  receivedAt: string;
  respondBy: string;
  state: string;
  breached: boolean;
  replies: { text: string; at: string }[];
  attachments: { fileName: string }[];
}

export function statusPage(d: StatusPageData): string {
  const replies = d.replies.length
    ? `<ol class="replies">${d.replies.map((r) => `<li><strong>${esc(r.at)}</strong><br>${esc(r.text)}</li>`).join('')}</ol>`
    : '<p>暂无答复。</p>';
  return layout(
    `工单 ${d.number}`,
    `<h1>工单 <span id="ticket-number">${esc(d.number)}</span></h1>
<dl>
<dt>办理状态</dt><dd id="ticket-state">${esc(d.state)}</dd>
<dt>标题</dt><dd>${esc(d.subject ?? '（无标题）')}</dd>
<dt>受理时间</dt><dd>${esc(d.receivedAt)}</dd>
<dt>答复期限</dt><dd>${esc(d.respondBy)}${d.breached ? '（已超期，已督办）' : ''}</dd>
<dt>附件</dt><dd>${d.attachments.length ? d.attachments.map((a) => esc(a.fileName)).join('、') : '无'}</dd>
<dt>来信内容</dt><dd>${esc(d.content)}</dd>
</dl>
<h2>答复</h2>
<div id="replies">${replies}</div>
<p><a href="/mailbox/status">查询其他工单</a> · <a href="/mailbox">写信</a></p>`,
  );
}

export function messagePage(title: string, message: string, link: { href: string; text: string } | null = { href: '/mailbox', text: '返回写信页面' }): string {
  return layout(title, `<h1>${esc(title)}</h1><div class="alert" role="alert"><p>${esc(message)}</p></div>${link ? `<p><a href="${esc(link.href)}">${esc(link.text)}</a></p>` : ''}`);
}
