import { loadConfig, redactConfigMessage } from './config.js';
import { openGateway, type Gateway } from './gateway.js';
import { createLogger } from './log.js';
import { GatewayError } from './errors.js';

/** `npm start`: the only place that reads the process environment. */
async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof GatewayError && err.code === 'CONFIG_INVALID') {
      process.stderr.write(`intake-gateway: ${err.message}\n`);
      process.exit(78); // EX_CONFIG
    }
    throw err;
  }
  const logger = createLogger(config.LOG_LEVEL);
  let gateway: Gateway;
  try {
    gateway = await openGateway(config, { logger });
  } catch (err) {
    // The shared database is unreachable or refuses the schema: nothing can be accepted durably.
    logger.fatal({ err }, 'store could not be opened');
    process.exit(1);
  }

  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) return;
    signalled = true;
    logger.info({ signal }, 'signal received');
    // A hard stop in case something hangs: the contract promises exit within 10 s.
    setTimeout(() => {
      logger.error('shutdown took too long; exiting');
      process.exit(1);
    }, 9_500).unref();
    gateway.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  try {
    await gateway.start();
  } catch (err) {
    // A channel's settings that only make sense together are checked as the channel loads.
    if (err instanceof GatewayError && err.code === 'CONFIG_INVALID') {
      // The channel's own message may quote a setting: shown only once no secret of the configuration is left in it.
      process.stderr.write(`intake-gateway: ${redactConfigMessage(err.message, config)}\n`);
      await gateway.stop().catch(() => {});
      process.exit(78);
    }
    logger.fatal({ err }, 'start failed');
    await gateway.stop().catch(() => {});
    process.exit(1);
  }
}

void main();
