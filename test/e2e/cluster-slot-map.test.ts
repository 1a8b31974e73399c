import { expect, test } from 'vitest';
import { masterFor, producerConnection, redisSettings } from '../../src/queue/redis.js';
import { waitFor } from '../support/redis.js';
import { ClusterGroup } from '../support/redis-topologies.js';

// An idle client's slot map still names a master that was killed and replaced. Ingest asks
// masterFor before it writes, so nothing else would refresh the map: it must find the promoted
// replica by itself, or ingest holds its buffer until the process restarts.
test('Cluster: after a master dies, masterFor finds the promoted replica without any other command', async () => {
  const cluster = await ClusterGroup.start({ masters: 3, replicasPerMaster: 1, nodeTimeoutMs: 1_000 });
  const settings = redisSettings({ cluster: cluster.urls, prefix: 'sm', waitReplicas: 1, waitTimeout: 500 });
  const client = producerConnection(settings, 'imkit-bridge-test');
  try {
    await waitFor(() => client.status === 'ready', { timeoutMs: 10_000, what: 'cluster client ready' });
    const key = 'sm:{webhook-audit}:wait';
    const old = masterFor(client, key);
    expect(old?.options.port).toBe(await cluster.masterOf(key));
    await old!.set(key, '1');
    const promoted = await cluster.awaitNewMaster(key, await cluster.killMaster(key, { wait: false }));
    // The client notices the dead node only through its own connection to it.
    await waitFor(() => old!.status === 'end', { timeoutMs: 10_000, what: 'the dead node dropped' });
    // A refresh may first read a node that has not yet heard of the failover and name the dead
    // master again, unconnected in the pool; masterFor refreshes while its node has no connection.
    const found = await waitFor(
      () => {
        const node = masterFor(client, key);
        return node?.options.port === promoted ? node : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 100, what: 'masterFor to name the promoted replica' },
    );
    // A write through it is taken (a replica or a stranger would answer MOVED).
    expect(await found.set(key, '2')).toBe('OK');
  } finally {
    client.disconnect();
    await cluster.close();
  }
}, 60_000);
