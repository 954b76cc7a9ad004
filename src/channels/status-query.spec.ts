import { expect } from 'chai';
import { spanWords, statusAnswerText, statusNotFoundText, statusQueryNumber } from './status-query.js';

describe('status query (pure)', () => {
  it('recognizes 查询/status/bare numbers with half- and full-width blanks and colons', () => {
    for (const text of [
      '查询 20261201-000123',
      '查询20261201-000123',
      '查询：20261201-000123',
      '查询:　20261201-000123',
      '查询　２０２６１２０１－０００１２３',
      'status 20261201-000123',
      'STATUS: 20261201-000123',
      'Status：20261201-000123',
      '/status 20261201-000123',
      '20261201-000123',
      '  20261201-000123\n',
    ]) {
      expect(statusQueryNumber(text), text).to.equal('20261201-000123');
    }
  });

  it('anything more than the query is an ordinary message', () => {
    for (const text of [
      '20261201-000123 号工单还没人处理，我要投诉',
      '查询 20261201-000123 谢谢',
      '请帮我查询 20261201-000123',
      '查询 20261201-000123？',
      '20261201-000123 20261201-000124',
      '查询',
      'status',
      '查询 2026120-000123',
      '查询 20261201-00012',
      '查询::20261201-000123',
      '查询\n20261201-000123',
      'statusx 20261201-000123',
    ]) {
      expect(statusQueryNumber(text), text).to.equal(null);
    }
  });

  it('words the state, the time left or overdue, and the latest reply; fits one SMS', () => {
    const base = { number: '20261201-000123', respondBy: 1_000_000, breached: false, latestReply: null, now: 1_000_000 - 150_000 };
    expect(statusAnswerText({ ...base, state: 'acknowledged' }, 70)).to.equal('【12345】工单20261201-000123：已受理，正在办理，距答复期限还有2分钟。');
    expect(statusAnswerText({ ...base, state: 'received', now: 1_000_000 + 5 * 3_600_000, breached: true }, 70)).to.equal(
      '【12345】工单20261201-000123：已受理，正在办理，已超过答复期限5小时，已督办。',
    );
    const long = '您反映的路灯问题已转交市政部门，维修人员将于今日下午到场处理，请保持电话畅通，如有疑问请再次来电咨询。';
    const sms = statusAnswerText({ ...base, state: 'responded', latestReply: long }, 70);
    expect([...sms].length).to.be.at.most(70);
    expect(sms).to.match(/^【12345】工单20261201-000123：已答复。最新答复：您反映的路灯问题.*…$/);
    expect(statusAnswerText({ ...base, state: 'responded', latestReply: long }, 300)).to.equal(`【12345】工单20261201-000123：已答复。最新答复：${long}`);
    expect([...statusNotFoundText('20261201-000123')].length).to.be.at.most(70);
  });

  it('spans', () => {
    expect(spanWords(30_000)).to.equal('不到1分钟');
    expect(spanWords(59 * 60_000)).to.equal('59分钟');
    expect(spanWords(125 * 60_000)).to.equal('2小时5分钟');
    expect(spanWords(27 * 3_600_000)).to.equal('1天3小时');
  });
});
