import { hasRedisServer } from './redis.js';

/** Fail the whole run with one clear line instead of dozens of confusing suite failures. */
export default function setup(): void {
  if (!hasRedisServer()) {
    throw new Error('imkit-bridge tests need redis-server on PATH: apt-get install redis-server');
  }
}
