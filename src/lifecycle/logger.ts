import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Paths pino blanks out wherever they appear in a log record. Tokens and secrets are also kept out
 * of log calls in the first place; this is the second line of defence.
 */
export const REDACT_PATHS = [
  'token',
  '*.token',
  'secret',
  '*.secret',
  'apiKey',
  '*.apiKey',
  'clientKey',
  '*.clientKey',
  'headers.authorization',
  'headers["im-authorization"]',
  'headers["im-api-key"]',
  'headers["im-client-key"]',
  '*.headers.authorization',
  'extra.Authorization',
  'extra["IM-Authorization"]',
  // ioredis attaches the failed command to its errors: for AUTH that is the password.
  'err.command.args',
  'err.cause.command.args',
];

export function createLogger(options: { level: string; destination?: pino.DestinationStream }): Logger {
  return pino(
    {
      level: options.level,
      base: { service: 'imkit-bridge' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    options.destination ?? pino.destination({ fd: 1, sync: false }),
  );
}
