import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { explainRedisError, keySlot, type RedisErrorContext } from '../../src/queue/redis.js';
import { freeRedisPort } from '../support/redis-topologies.js';
import { waitFor } from '../support/redis.js';

describe('keySlot', () => {
  let dir: string;
  let server: ChildProcess;
  let client: Redis;

  beforeAll(async () => {
    // One node with cluster mode on answers CLUSTER KEYSLOT without any slots assigned.
    dir = mkdtempSync(join(tmpdir(), 'imkit-bridge-keyslot-'));
    const port = await freeRedisPort();
    server = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--cluster-enabled', 'yes'],
      { stdio: 'ignore' },
    );
    client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => 50 });
    client.on('error', () => {});
    await waitFor(async () => (await client.ping().catch(() => '')) === 'PONG', {
      what: 'cluster-enabled node',
    });
  });

  afterAll(async () => {
    client?.disconnect();
    server?.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  test('agrees with CLUSTER KEYSLOT for 1,000 random keys, hash tags and multibyte text included', async () => {
    const alphabet = 'abc{}:-_xyz日本é0123456789';
    const keys = Array.from({ length: 1000 }, (_, i) => {
      const length = 1 + (i % 24);
      let key = '';
      for (let j = 0; j < length; j++) key += alphabet[Math.floor(Math.random() * alphabet.length)];
      return key;
    });
    keys.push('{}', '{}x', 'a{b}c{d}', '{webhook-audit}', 'imkit-bridge:{webhook-audit}:wait', '{a');
    const pipeline = client.pipeline();
    for (const key of keys) pipeline.call('CLUSTER', 'KEYSLOT', key);
    const answers = (await pipeline.exec())!.map(([err, slot]) => {
      if (err) throw err;
      return Number(slot);
    });
    expect(keys.map(keySlot)).toEqual(answers);
    expect(keySlot('imkit-bridge:{webhook-audit}:wait')).toBe(keySlot('{webhook-audit}'));
  });
});

describe('explainRedisError', () => {
  const sentinel: RedisErrorContext = { settings: { topology: 'sentinel', name: 'mymaster' } };
  const plain: RedisErrorContext = { settings: { topology: 'single' } };
  const tls: RedisErrorContext = { settings: { topology: 'single', tls: {} } };
  const cluster: RedisErrorContext = {
    settings: { topology: 'cluster' },
    slotOwner: (slot) => (slot === 11207 ? 'destination audit' : undefined),
  };
  const error = (message: string, fields: Record<string, unknown> = {}) =>
    Object.assign(new Error(message), fields);

  test.each([
    [
      'a master name the sentinels do not know',
      error(
        'All sentinels are unreachable. Retrying from scratch after 40ms. Last error: ERR No such master with that name',
      ),
      sentinel,
      'sentinels: no master named "mymaster"',
      true,
    ],
    [
      'sentinels down, with the causes they reported',
      error(
        'All sentinels are unreachable. Retrying from scratch after 320ms. Last error: Connection is closed.',
      ),
      {
        ...sentinel,
        sentinelErrors: [
          'failed to connect to sentinel 127.0.0.1:26379 because connect ECONNREFUSED 127.0.0.1:26379',
          'failed to connect to sentinel 127.0.0.1:26380 because connect ECONNREFUSED 127.0.0.1:26380',
        ],
      },
      'sentinels unreachable: 127.0.0.1:26379 ECONNREFUSED, 127.0.0.1:26380 ECONNREFUSED',
      false,
    ],
    [
      'a wrong password on a cluster node',
      error('WRONGPASS invalid username-password pair or user is disabled.', { node: '127.0.0.1:27201' }),
      cluster,
      '127.0.0.1:27201: WRONGPASS invalid username-password pair or user is disabled.',
      true,
    ],
    [
      'no password where one is needed',
      error('Ready check failed: NOAUTH Authentication required.'),
      plain,
      'NOAUTH Authentication required.',
      true,
    ],
    [
      'redis.cluster pointing at a plain server',
      error('Failed to refresh slots cache.', {
        lastNodeError: error('ERR This instance has cluster support disabled'),
      }),
      cluster,
      'redis.cluster points at a server without cluster mode',
      true,
    ],
    [
      'a slot whose master is gone',
      error('Too many Cluster redirections. Last error: MOVED 11207 127.0.0.1:27203'),
      cluster,
      'cluster: slot 11207 (destination audit) has no reachable master (127.0.0.1:27203)',
      true,
    ],
    [
      'a cluster that is down',
      error('CLUSTERDOWN The cluster is down'),
      cluster,
      'cluster down (a shard has no master; failover pending?)',
      true,
    ],
    [
      'a server certificate from another CA',
      error('self-signed certificate in certificate chain', { code: 'SELF_SIGNED_CERT_IN_CHAIN' }),
      tls,
      'TLS: server certificate not trusted (check redis.tls.ca)',
      true,
    ],
    [
      'an address the certificate does not cover',
      error(
        "Hostname/IP does not match certificate's altnames: IP: 10.0.0.7 is not in the cert's list: 127.0.0.1",
        {
          code: 'ERR_TLS_CERT_ALTNAME_INVALID',
        },
      ),
      tls,
      'TLS: address not in the certificate (announced IPs need SANs)',
      true,
    ],
    [
      'a server that requires a client certificate',
      error('C0E7:error:0A00045C:SSL routines:ssl3_read_bytes:tlsv13 alert certificate required', {
        code: 'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED',
      }),
      tls,
      'TLS: server requires a client certificate (redis.tls.cert/key)',
      true,
    ],
    [
      'redis:// to a TLS-only port',
      error('read ECONNRESET', { code: 'ECONNRESET' }),
      plain,
      'read ECONNRESET; is the port TLS-only? (rediss:// vs redis://)',
      false,
    ],
    [
      'rediss:// to a plain port',
      error('connect ETIMEDOUT', { code: 'ETIMEDOUT' }),
      tls,
      'connect ETIMEDOUT; is the port plain? (rediss:// vs redis://)',
      false,
    ],
    [
      'a refused connection, as it is',
      error('connect ECONNREFUSED 127.0.0.1:6379', { code: 'ECONNREFUSED' }),
      plain,
      'connect ECONNREFUSED 127.0.0.1:6379',
      false,
    ],
  ])('%s', (_, err, context, reason, specific) => {
    expect(explainRedisError(err, context)).toEqual({ reason, specific });
  });

  test('retry delays are left out, so repeats of one cause read the same', () => {
    const at = (ms: number) =>
      explainRedisError(
        error(
          `All sentinels are unreachable. Retrying from scratch after ${ms}ms. Last error: Connection is closed.`,
        ),
        sentinel,
      ).reason;
    expect(at(10)).toBe(at(2000));
    expect(at(10)).not.toMatch(/\d+ms/);
  });
});
