import { expect } from 'chai';
import { PrivateRabbit } from '../support/private-rabbit.js';
import { runFaultSuite, type FaultSuiteOptions, type FaultSuiteResult } from './driver.js';

/**
 * The fault suite as mocha tests: one run of the driver in `before`, then one
 * test per promise so a failure names what broke. Shared by the bounded variant
 * (part of `npm test`) and the full-size one (`npm run test:faults`).
 */
export function describeFaultSuite(title: string, opts: FaultSuiteOptions, timeoutMs: number): void {
  describe(title, function () {
    this.timeout(timeoutMs);
    let r: FaultSuiteResult;

    before(async function () {
      if (!PrivateRabbit.available()) {
        console.log('fault suite skipped: RabbitMQ server is not installed (the private broker node needs /usr/lib/rabbitmq/bin/rabbitmq-server)');
        this.skip();
      }
      r = await runFaultSuite(opts);
      console.log(r.table);
      if (r.gatewayLog) console.log(`gateway log kept in ${r.gatewayLog}`);
    });

    it('loses nothing that any client got acknowledged', () => {
      expect(r.total.acknowledged, 'the load acknowledged something').to.be.greaterThan(0);
      expect(r.lostMarkers, 'acknowledged upstream but never on tickets.created').to.deep.equal([]);
      expect(r.total.lost).to.equal(0);
    });

    it('never gives one upstream message two ticket ids', () => {
      expect(r.splitMarkers, 'markers published under two ids (or not under the id the client was told)').to.deep.equal([]);
      expect(r.total.split).to.equal(0);
    });

    it('turns every appended mail into a ticket (mail is never lost upstream)', function () {
      if (!r.rows.some((x) => x.channel === 'mailbox')) this.skip();
      expect(r.mailsNeverPublished).to.deep.equal([]);
    });

    it('acknowledges nothing while the store is read-only, says 503 on /readyz, and recovers', function () {
      const f = r.faults.find((x) => x.fault === 'disk store made read-only');
      if (!f || f.notes.some((n) => n.startsWith('skipped'))) {
        console.log(`read-only store fault not run: ${r.skipped.join('; ') || 'not in the plan'}`);
        this.skip();
      }
      expect(r.readOnlyReadyz.during, '/readyz while read-only').to.equal(503);
      expect(r.readOnlyReadyz.after, '/readyz after the store is writable again').to.equal(200);
      for (const [ch, outcome] of Object.entries(r.readOnlyProbes)) expect(outcome, `${ch} while read-only`).to.match(/^refused/);
      if ('sms' in r.readOnlyProbes) expect(r.readOnlyProbes.sms).to.contain('0x64');
      if ('app' in r.readOnlyProbes) expect(r.readOnlyProbes.app).to.contain('503');
      expect(r.ackedWhileReadOnly).to.equal(0);
    });

    it('joins a long SMS whose parts straddle a dropped SMSC connection into one complete ticket', function () {
      if (r.longSmsAcrossDrops.length === 0) this.skip();
      for (const l of r.longSmsAcrossDrops) {
        expect(l.published, `${l.marker} published`).to.equal(true);
        expect(l.complete, `${l.marker} complete`).to.equal(true);
        expect(l.incomplete, `${l.marker} incomplete flag`).to.equal(false);
      }
    });

    it('ran every planned fault', () => {
      const failed = r.faults.filter((f) => !f.ok && !f.notes.some((n) => n.startsWith('skipped')));
      expect(failed.map((f) => `${f.fault}: ${f.notes.join('; ')}`)).to.deep.equal([]);
    });

    it('the gateway never died except when killed, and exits 0 on SIGTERM at the end', () => {
      expect(r.unexpectedExits).to.deep.equal([]);
    });
  });
}
