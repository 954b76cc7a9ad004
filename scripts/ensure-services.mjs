#!/usr/bin/env node
// Makes sure what the tests talk to is there: RabbitMQ running on 127.0.0.1:5672,
// PostgreSQL on 127.0.0.1:5432, and the Debian packages the tests start privately (Dovecot, Chromium). Starts
// or installs what is missing when it can, otherwise fails with one clear line.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';

const isRoot = process.getuid?.() === 0;
let aptUpdated = false;

function portOpen(port, host = '127.0.0.1') {
  return new Promise((resolve) => {
    const s = connect({ port, host });
    const done = (ok) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(1000, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

function fail(line) {
  console.error(`ensure-services: ${line}`);
  process.exit(1);
}

const canApt = isRoot && existsSync('/usr/bin/apt-get');

/** `apt-get install` (after one `apt-get update` per run); its exit status. */
function aptGet(pkgs, stdio) {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  if (!aptUpdated) {
    spawnSync('apt-get', ['update', '-qq'], { stdio, env });
    aptUpdated = true;
  }
  return spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...pkgs], { stdio, env }).status;
}

/** What the tests need: installed, or one line saying what to install. */
function aptInstall(pkgs, why) {
  if (!canApt) {
    fail(`${why} is missing; install the Debian package(s) ${pkgs.join(' ')} (as root: apt-get install -y ${pkgs.join(' ')})`);
  }
  console.log(`ensure-services: installing ${pkgs.join(' ')} for ${why}`);
  const status = aptGet(pkgs, 'inherit');
  if (status !== 0) fail(`could not install ${pkgs.join(' ')} for ${why} (apt-get exited ${status})`);
}

/** What helps but is not needed: installed quietly when possible, else one warning. */
function aptInstallOptional(pkgs, warning) {
  if (canApt && aptGet(pkgs, 'ignore') !== 0) console.log(`ensure-services: ${warning}`);
}

async function ensureRabbit() {
  if (await portOpen(5672)) return;
  if (!existsSync('/usr/sbin/rabbitmq-server')) aptInstall(['rabbitmq-server'], 'RabbitMQ');
  console.log('ensure-services: starting RabbitMQ (rabbitmq-server -detached)');
  try {
    execFileSync('rabbitmq-server', ['-detached'], { stdio: 'inherit' });
  } catch {
    // -detached returns before the node is up; the port check below decides.
  }
  const until = Date.now() + 90_000;
  while (!(await portOpen(5672))) {
    if (Date.now() > until) fail('RabbitMQ did not come up on 127.0.0.1:5672; start it with: rabbitmq-server -detached');
    await new Promise((r) => setTimeout(r, 500));
  }
  // The node accepts TCP before it finishes booting; rabbitmqctl await_startup waits for the rest.
  spawnSync('rabbitmqctl', ['-q', 'await_startup'], { stdio: 'ignore', timeout: 60_000 });
}

/**
 * PostgreSQL on 127.0.0.1:5432 with trust auth for user postgres: the store tests and
 * the several-instances tests make a database of their own on it (and start private
 * clusters with initdb/pg_ctl for outages). Started from Debian's cluster when it is
 * installed but stopped; installed when missing.
 */
async function ensurePostgres() {
  if (await portOpen(5432)) return;
  if (!existsSync('/usr/lib/postgresql')) aptInstall(['postgresql'], 'PostgreSQL (store tests)');
  const versions = existsSync('/etc/postgresql') ? execFileSync('ls', ['/etc/postgresql']).toString().trim().split(/\s+/).filter(Boolean) : [];
  for (const v of versions) {
    console.log(`ensure-services: starting PostgreSQL ${v} (pg_ctlcluster ${v} main start)`);
    spawnSync('pg_ctlcluster', ['--skip-systemctl-redirect', v, 'main', 'start'], { stdio: 'inherit' });
  }
  const until = Date.now() + 60_000;
  while (!(await portOpen(5432))) {
    if (Date.now() > until) fail('PostgreSQL did not come up on 127.0.0.1:5432; start it (pg_ctlcluster <version> main start) with trust auth for user postgres on 127.0.0.1');
    await new Promise((r) => setTimeout(r, 500));
  }
}

function ensurePackage(binary, pkgs, why) {
  if (!existsSync(binary)) aptInstall(pkgs, why);
}

await ensureRabbit();
await ensurePostgres();
ensurePackage('/usr/sbin/dovecot', ['dovecot-imapd'], 'the IMAP server used by the mailbox tests (Dovecot)');
ensurePackage('/usr/bin/chromium', ['chromium'], 'the browser used by the web form tests (Chromium)');
// The fault suite's read-only-store fault mounts the data directory on a small FUSE filesystem.
if (!existsSync('/usr/include/fuse3/fuse.h') || !existsSync('/usr/bin/fusermount3')) {
  aptInstall(['libfuse3-dev', 'fuse3', 'pkg-config'], 'the read-only filesystem of the fault suite (FUSE 3)');
}
// A CJK font, so screenshots of the zh-CN pages show characters rather than boxes (not needed to pass).
if (!existsSync('/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc')) {
  aptInstallOptional(['fonts-wqy-zenhei'], 'fonts-wqy-zenhei not installed; page screenshots may show boxes for Chinese text');
}
// `npm run bench` measures the SMS channel beside Kannel, the peer a telecom engineer would
// pick; it is optional (the bench skips it with a message), so a failed install only warns.
if (process.argv.includes('--bench') && !existsSync('/usr/sbin/bearerbox')) {
  aptInstallOptional(['kannel'], 'kannel not installed; the bench runs the SMS section without Kannel beside it');
}
console.log('ensure-services: RabbitMQ, PostgreSQL, Dovecot, Chromium and FUSE are ready');
