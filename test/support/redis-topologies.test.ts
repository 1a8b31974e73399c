import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, Redis } from 'ioredis';
import { describe, expect, test } from 'vitest';
import { ClusterGroup, SentinelGroup, TlsRedis, clientTls, makeCerts } from './redis-topologies.js';
import { waitFor } from './redis.js';

// The failover tests lean on these: a lagging replica loses the master's last writes, a promotion
// is seen by clients, and the certificates are accepted (or rejected) as a real deployment's would be.

describe('SentinelGroup', () => {
  test('frozen replication loses the writes made since; the sentinels promote a replica', async () => {
    const group = await SentinelGroup.start({ replicas: 2, sentinels: 3, downAfterMs: 1_000 });
    try {
      const client = new Redis({
        sentinels: group.sentinelUrls.map((u) => ({
          host: new URL(u).hostname,
          port: Number(new URL(u).port),
        })),
        name: group.name,
        maxRetriesPerRequest: 1,
      });
      client.on('error', () => {});
      await client.set('before', '1');
      expect(await client.wait(2, 2_000)).toBe(2);
      await group.freezeReplication();
      await client.set('after', '1');
      // The writer's WAIT is the signal the bridge relies on: no replica acknowledged.
      expect(await client.wait(1, 300)).toBe(0);
      const old = group.master;
      const promoted = await group.killMaster();
      expect(promoted).not.toBe(old);
      await waitFor(async () => (await client.set('probe', '1').catch(() => null)) === 'OK', {
        timeoutMs: 15_000,
        what: 'the client to write to the new master',
      });
      expect(await client.get('before')).toBe('1');
      expect(await client.get('after')).toBeNull();
      client.disconnect();
    } finally {
      await group.close();
    }
  }, 60_000);
});

describe('ClusterGroup', () => {
  test('keys spread over the masters; a stopped replica promoted after its master died lacks the last writes', async () => {
    const group = await ClusterGroup.start({ masters: 3, replicasPerMaster: 1, nodeTimeoutMs: 1_000 });
    try {
      const layout = await group.layout();
      expect(layout.filter((n) => n.role === 'master')).toHaveLength(3);
      const master = await group.masterOf('{a}');
      const replica = await group.replicaOf(master);
      const cluster = new Cluster([{ host: '127.0.0.1', port: group.ports[0]! }], {
        redisOptions: { maxRetriesPerRequest: 1 },
      });
      cluster.on('error', () => {});
      await cluster.set('{a}:before', '1');
      const node = group.client(master);
      const onReplica = group.client(replica);
      await onReplica.readonly();
      await waitFor(async () => (await onReplica.get('{a}:before')) === '1', { what: 'replication' });
      onReplica.disconnect();
      group.stop(replica);
      // Enough to fill the socket buffers between them, so the last write stays in the master's memory.
      const filler = 'x'.repeat(1 << 20);
      for (let i = 0; i < 30; i++) await node.set(`{a}:filler:${i}`, filler);
      await node.set('{a}:after', '1');
      expect(await node.wait(1, 200)).toBe(0);
      node.disconnect();
      await group.killMaster('{a}', { wait: false });
      group.cont(replica);
      expect(await group.awaitNewMaster('{a}', master)).toBe(replica);
      const promoted = group.client(replica);
      expect(await promoted.get('{a}:before')).toBe('1');
      expect(await promoted.get('{a}:after')).toBeNull();
      promoted.disconnect();
      cluster.disconnect();
    } finally {
      await group.close();
    }
  }, 60_000);
});

describe('TLS', () => {
  test('a client with the CA and client certificate is served; an unrelated CA is refused', async () => {
    const server = await TlsRedis.start({ authClients: 'yes', password: 'pw' });
    try {
      const good = new Redis(server.url, {
        password: 'pw',
        tls: clientTls(server.certs),
        maxRetriesPerRequest: 0,
      });
      expect(await good.ping()).toBe('PONG');
      good.disconnect();
      const wrongCa = new Redis(server.url, {
        password: 'pw',
        tls: { ...clientTls(server.certs), ca: readFileSync(server.certs.otherCa) },
        lazyConnect: true,
        retryStrategy: () => null,
      });
      wrongCa.on('error', () => {});
      await expect(wrongCa.connect()).rejects.toThrow();
      wrongCa.disconnect();
    } finally {
      await server.close();
    }
  });

  test('makeCerts writes absolute paths to a CA, server and client certificates', () => {
    const dir = mkdtempSync(join(tmpdir(), 'imkit-bridge-certs-'));
    try {
      const files = makeCerts(dir);
      for (const file of Object.values(files)) expect(file.startsWith('/')).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
