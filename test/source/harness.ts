import { BridgeMetrics } from '../../src/admin/metrics.js';
import { configSchema, type AccountConfig, type BridgeConfig } from '../../src/config/schema.js';
import type { LogThrottle } from '../../src/lifecycle/log-throttle.js';
import { createLogger, type Logger } from '../../src/lifecycle/logger.js';
import { AccountSession, type SessionHandlers, type SessionTiming } from '../../src/source/session.js';
import type { TokenProvider } from '../../src/source/tokens.js';
import type { ImkitSimulator } from '../sim/imkit-simulator.js';

/** A config-validated account, so tests see the same defaults (deviceId, events…) as the daemon. */
export function accountConfig(account: Record<string, unknown>): AccountConfig {
  const config = configSchema.parse({
    redis: { url: 'redis://127.0.0.1:6379' },
    imkit: { url: 'http://127.0.0.1:1', apiKey: 'unused' },
    accounts: [{ ...(account.tokenFile || account.issueToken ? {} : { token: 'unused' }), ...account }],
  });
  return config.accounts[0]!;
}

/** A pino logger whose every line lands in `lines`, for asserting what was (not) logged. */
export function captureLogger(): { logger: Logger; lines: string[]; text: () => string } {
  const lines: string[] = [];
  const logger = createLogger({
    level: 'debug',
    destination: { write: (line: string) => void lines.push(line) },
  });
  return { logger, lines, text: () => lines.join('') };
}

export class Recorder implements SessionHandlers {
  readonly events: { name: string; payload: unknown; receivedAt: number }[] = [];
  readonly lives: { at: number; gap?: { from: number; to: number } }[] = [];
  readonly downs: { at: number; reason: string }[] = [];
  onEvent(name: string, payload: unknown, receivedAt: number): void {
    this.events.push({ name, payload, receivedAt });
  }
  onLive(info: { at: number; gap?: { from: number; to: number } }): void {
    this.lives.push(info);
  }
  onDown(info: { at: number; reason: string }): void {
    this.downs.push(info);
  }
  named(name: string): unknown[] {
    return this.events.filter((e) => e.name === name).map((e) => e.payload);
  }
}

export const FAST: SessionTiming = {
  ackTimeoutMs: 1_000,
  connectTimeoutMs: 2_000,
  backoffBaseMs: 50,
  backoffCapMs: 400,
  healthyAfterMs: 1_000,
};

export interface Harness {
  session: AccountSession;
  recorder: Recorder;
  metrics: BridgeMetrics;
  log: ReturnType<typeof captureLogger>;
}

export function makeSession(
  sim: ImkitSimulator,
  opts: {
    account: Record<string, unknown>;
    tokens: TokenProvider;
    url?: string;
    timing?: SessionTiming;
    random?: () => number;
    decodeAck?: (raw: unknown) => unknown;
    failureLog?: LogThrottle;
  },
): Harness {
  const log = captureLogger();
  const metrics = new BridgeMetrics();
  const recorder = new Recorder();
  const imkit: BridgeConfig['imkit'] = {
    url: opts.url ?? sim.url,
    clientKey: sim.clientKey,
    apiKey: sim.apiKey,
  };
  const session = new AccountSession({
    account: accountConfig(opts.account),
    imkit,
    tokens: opts.tokens,
    logger: log.logger,
    metrics,
    handlers: recorder,
    timing: { ...FAST, ...opts.timing },
    ...(opts.random ? { random: opts.random } : {}),
    ...(opts.decodeAck ? { decodeAck: opts.decodeAck } : {}),
    ...(opts.failureLog ? { failureLog: opts.failureLog } : {}),
  });
  return { session, recorder, metrics, log };
}
