import { parseArgs } from 'node:util';
import { loadConfig, redactConfigMessage, type Config } from '../config.js';
import { parseDuration } from '../duration.js';
import { GatewayError, errorCode, errorMessage } from '../errors.js';
import { Channel } from '../ticket.js';
import type { Store } from '../store/types.js';
import { checks, runCheck } from './doctor.js';
import { formatOutbox, outboxView } from './outbox.js';
import { checkLine, iso, Output } from './output.js';
import { replay } from './replay.js';
import { openStore, storeName } from './store.js';
import { findTicket, formatTicket, ticketView } from './ticket.js';
import { parseTime } from './time.js';

/**
 * `intake-gateway <command>`: what whoever is on call needs, on the configuration
 * the gateway reads (config/default.json ← GATEWAY_CONFIG ← environment). This is
 * an entry point: the only place here that reads the process environment.
 *
 * Exit codes: 0 done (every check passed); 1 a check failed, the ticket is not
 * there, or the store could not be used; 2 wrong usage; 78 invalid configuration.
 */

const HELP = `usage: intake-gateway <command> [options]

commands:
  doctor                     check the configuration, the store, each broker node and each
                             configured channel's peer; one line per check; exit 1 if any fails
  ticket <id|number>         a ticket: summary, receipts, notices, replies, then its JSON
  replay --since <time>      journal ticket.created again, with the same messageIds, for the
                             tickets received since <time> (the running gateway publishes them)
  outbox                     outbox depth, its oldest row and what it waits for

options:
  --json                     ticket, replay, outbox: machine-readable JSON
  --since <time>             replay: ISO 8601 (2026-12-01T08:00:00+08:00) or back from now (2h, 3d)
  --until <time>             replay: up to this time (default now)
  --channel <name>           replay: only this channel (sms, wechat, mailbox, weibo, app, telegram)
  --dry-run                  replay: count, journal nothing
  --url <base>               outbox: also ask the gateway's GET /readyz (http://127.0.0.1:8080)
  --timeout <duration>       doctor, outbox: longest wait per check (default 5s)
  -h, --help                 this text

configuration: config/default.json, the JSON file named by GATEWAY_CONFIG, then the
environment (AMQP_URL, DATA_DIR or DATABASE_URL, SMPP_URL, …), as the gateway reads it.
exit codes: 0 ok, 1 failed or not found, 2 usage, 78 invalid configuration`;

class UsageError extends Error {}

async function main(argv: string[], env: Record<string, string | undefined>): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        json: { type: 'boolean' },
        since: { type: 'string' },
        until: { type: 'string' },
        channel: { type: 'string' },
        'dry-run': { type: 'boolean' },
        url: { type: 'string' },
        timeout: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    process.stderr.write(`intake-gateway: ${errorMessage(err)}\n${HELP}\n`);
    return 2;
  }
  const { values: opts, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (opts.help || command === 'help' || !command) {
    process.stdout.write(`${HELP}\n`);
    return command || opts.help ? 0 : 2;
  }
  if (!['doctor', 'ticket', 'replay', 'outbox'].includes(command)) {
    process.stderr.write(`intake-gateway: unknown command ${JSON.stringify(command)}\n${HELP}\n`);
    return 2;
  }
  const timeoutMs = opts.timeout === undefined ? 5000 : parseDuration(opts.timeout);
  if (timeoutMs === null || timeoutMs <= 0) {
    process.stderr.write(`intake-gateway: --timeout ${JSON.stringify(opts.timeout)}: expected a duration such as 5s\n`);
    return 2;
  }

  let config: Config;
  try {
    config = loadConfig(env);
  } catch (err) {
    // loadConfig's message is already masked (secret values and credentials).
    const message = errorMessage(err);
    if (command === 'doctor') {
      new Output(null).line(checkLine('FAIL', 'config', message));
      return 1;
    }
    process.stderr.write(`intake-gateway: ${message}\n`);
    return err instanceof GatewayError && err.code === 'CONFIG_INVALID' ? 78 : 1;
  }
  const out = new Output(config);

  try {
    switch (command) {
      case 'doctor':
        return await doctor(config, out, timeoutMs);
      case 'ticket': {
        if (rest.length !== 1) throw new UsageError('ticket takes one ticket id or number');
        return await withStore(config, async (store) => {
          const t = await findTicket(store, rest[0]!);
          if (!t) {
            out.error(`no ticket ${rest[0]} in ${storeName(config)}`);
            return 1;
          }
          const view = await ticketView(store, t);
          out.record(opts.json ? JSON.stringify(view) : formatTicket(view));
          return 0;
        });
      }
      case 'replay': {
        if (rest.length > 0) throw new UsageError(`replay takes no arguments besides its options (got ${rest.join(' ')})`);
        if (!opts.since) throw new UsageError('replay needs --since <time>');
        const now = Date.now();
        const since = parseTime(opts.since, now, '--since');
        const until = opts.until ? parseTime(opts.until, now, '--until') : now;
        if (until < since) throw new UsageError('--until is before --since');
        let channel: Channel | undefined;
        if (opts.channel !== undefined) {
          const c = Channel.safeParse(opts.channel);
          if (!c.success) throw new UsageError(`--channel ${JSON.stringify(opts.channel)}: expected one of ${Channel.options.join(', ')}`);
          channel = c.data;
        }
        const dryRun = opts['dry-run'] ?? false;
        return await withStore(config, async (store) => {
          const r = await replay(store, { since, until, channel, dryRun });
          const window = { since: iso(since), until: iso(until), channel: channel ?? null };
          if (opts.json) out.record(JSON.stringify({ queued: r.queued, dryRun, ...window, firstReceivedAt: iso(r.first), lastReceivedAt: iso(r.last) }));
          else {
            const what = `${r.queued} ticket.created message${r.queued === 1 ? '' : 's'}`;
            const range = `tickets received ${window.since} … ${window.until}${channel ? ` on ${channel}` : ''}`;
            out.line(
              dryRun
                ? `would queue ${what} (${range}); nothing journaled`
                : `queued ${what} (${range}) in the outbox of ${storeName(config)}; the running gateway's relay publishes them with their original messageIds`,
            );
          }
          return 0;
        });
      }
      case 'outbox': {
        if (rest.length > 0) throw new UsageError('outbox takes no arguments besides its options');
        return await withStore(config, async (store) => {
          const v = await outboxView(store, config, Date.now(), { timeoutMs, readyzUrl: opts.url ?? null });
          if (opts.json) out.line(JSON.stringify(v));
          else out.line(formatOutbox(v));
          return 0;
        });
      }
    }
  } catch (err) {
    if (err instanceof UsageError || (err instanceof GatewayError && err.code === 'INPUT_INVALID')) {
      out.error(err.message);
      return 2;
    }
    out.error(`${errorCode(err)} ${errorMessage(err)}`);
    return 1;
  }
  return 2;
}

async function doctor(config: Config, out: Output, timeoutMs: number): Promise<number> {
  out.line(checkLine('ok', 'config', `loaded (store ${config.DATABASE_URL ? 'postgres' : 'sqlite'}, ${config.AMQP_URL.split(',').length} broker node(s))`));
  let failed = 0;
  for (const check of checks(config)) {
    const r = await runCheck(check, timeoutMs);
    if (r.status === 'FAIL') failed++;
    out.line(checkLine(r.status, r.name, r.detail));
  }
  return failed > 0 ? 1 : 0;
}

async function withStore(config: Config, fn: (store: Store) => Promise<number>): Promise<number> {
  const store = await openStore(config);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

main(process.argv.slice(2), process.env).then(
  (code) => {
    // Pooled connections and timers of libraries (smpp, imapflow) must not keep a finished command alive.
    process.exitCode = code;
    setTimeout(() => process.exit(code), 100).unref();
  },
  (err: unknown) => {
    process.stderr.write(`intake-gateway: ${redactConfigMessage(`${errorCode(err)} ${errorMessage(err)}`)}\n`);
    process.exit(1);
  },
);
