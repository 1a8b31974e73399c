/**
 * The IMKIT simulator sharded over `SIM_WORKERS` processes (node:cluster) that share one port, for
 * the sharing benchmark: 10,000 accounts held twice are 20,000 sockets, more than one process may
 * open here (`ulimit -n` 20000). The bridge has one `imkit.url`, so the workers share it and the
 * cluster primary hands each accepted connection to the next worker (round robin); the bridge's
 * sockets are websocket-only, so a session never needs to come back to the same worker.
 *
 * Every worker accepts every account's token (tokens are made here and adopted by all), so an
 * auth2 or a REST catch-up call works on whichever worker takes it. Emits go to every worker, and
 * each sends them to its own sockets. Messages are stored per worker: a REST catch-up sees only
 * the worker's own, which is right while nothing is emitted (the hold and kill phases), and with
 * one worker (the traffic phases) it sees them all.
 *
 * Driven over IPC by bench/sharing.ts (ClusterCommand); the primary answers each command once all
 * workers did.
 */
import cluster, { type Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { ImkitSimulator } from '../test/sim/imkit-simulator.js';

export type ClusterCommand =
  | { op: 'tokens'; accounts: string[] }
  | { op: 'counts' }
  | { op: 'spread'; accounts: string[]; perSecond: number; seconds: number; tag: string }
  | { op: 'burst'; accounts: string[]; count: number; tag: string }
  | { op: 'stats' };

export type ClusterReply =
  | { op: 'ready'; url: string; workerPids: number[] }
  | { op: 'tokens'; tokens: Record<string, string> }
  | { op: 'counts'; counts: Record<string, number> }
  | { op: 'emitted'; count: number; firstAt: number; lastAt: number }
  | { op: 'stats'; restMax: number };

type WorkerCommand =
  { op: 'adopt'; tokens: Record<string, string> } | Exclude<ClusterCommand, { op: 'tokens' }>;

type WorkerReply = { op: 'ready' } | { op: 'adopted' } | Exclude<ClusterReply, { op: 'ready' | 'tokens' }>;

/** Chunk of emits per turn of the event loop, so socket writes flush while a burst is produced. */
const CHUNK = 250;
const FILLER = 'Release train 24.11 is green; please verify the staging links before the stand-up. ';

if (cluster.isPrimary) await primary();
else await worker();

async function primary(): Promise<void> {
  const port = await freePort();
  const count = Number(process.env.SIM_WORKERS ?? 2);
  const workers: Worker[] = [];
  for (let i = 0; i < count; i++) workers.push(cluster.fork({ SIM_PORT: String(port) }));
  await Promise.all(workers.map((w) => reply<WorkerReply>(w)));
  const all = <T extends WorkerReply>(command: WorkerCommand) =>
    Promise.all(
      workers.map((w) => {
        const answer = reply<T>(w);
        w.send(command);
        return answer;
      }),
    );
  const send = (message: ClusterReply) => process.send!(message);
  process.on('message', (command: ClusterCommand) => {
    void (async () => {
      switch (command.op) {
        case 'tokens': {
          const tokens = Object.fromEntries(
            command.accounts.map((id) => [id, `tok_${randomBytes(18).toString('base64url')}`]),
          );
          await all({ op: 'adopt', tokens });
          return send({ op: 'tokens', tokens });
        }
        case 'counts': {
          const counts: Record<string, number> = {};
          for (const part of await all<Extract<WorkerReply, { op: 'counts' }>>(command))
            for (const [id, n] of Object.entries(part.counts)) counts[id] = (counts[id] ?? 0) + n;
          return send({ op: 'counts', counts });
        }
        case 'stats': {
          const parts = await all<Extract<WorkerReply, { op: 'stats' }>>(command);
          return send({ op: 'stats', restMax: Math.max(...parts.map((p) => p.restMax)) });
        }
        case 'spread':
        case 'burst': {
          const parts = await all<Extract<WorkerReply, { op: 'emitted' }>>(command);
          return send({
            op: 'emitted',
            count: Math.max(...parts.map((p) => p.count)),
            firstAt: Math.min(...parts.map((p) => p.firstAt)),
            lastAt: Math.max(...parts.map((p) => p.lastAt)),
          });
        }
      }
    })();
  });
  process.on('disconnect', () => {
    for (const w of workers) w.kill();
    process.exit(0);
  });
  send({ op: 'ready', url: `http://127.0.0.1:${port}`, workerPids: workers.map((w) => w.process.pid!) });
}

async function worker(): Promise<void> {
  const sim = await ImkitSimulator.start({
    port: Number(process.env.SIM_PORT),
    pingIntervalMs: 10_000,
    maxStoredMessages: 50_000,
  });
  const send = (message: WorkerReply) => process.send!(message);
  /** A chat message (~600 bytes on the wire) to the account's own room. */
  const emitOne = (account: string, tag: string, i: number): number => {
    const sentAt = Date.now();
    sim.sendMessage(
      `bench-room-${account}`,
      { text: `${FILLER}${tag} #${i}`, sentAt, tag, seq: i },
      { members: [account, 'alice'], sender: 'alice' },
    );
    return sentAt;
  };
  process.on('message', (command: WorkerCommand) => {
    switch (command.op) {
      case 'adopt':
        for (const [id, token] of Object.entries(command.tokens)) sim.adoptToken(token, id);
        return send({ op: 'adopted' });
      case 'counts':
        return send({ op: 'counts', counts: Object.fromEntries(sim.connectedCounts()) });
      case 'stats':
        return send({ op: 'stats', restMax: sim.restInFlight.max });
      case 'burst': {
        let i = 0;
        let firstAt = 0;
        let lastAt = 0;
        const step = () => {
          for (const end = Math.min(command.count, i + CHUNK); i < end; i++) {
            lastAt = emitOne(command.accounts[i % command.accounts.length]!, command.tag, i);
            firstAt ||= lastAt;
          }
          if (i < command.count) setImmediate(step);
          else send({ op: 'emitted', count: i, firstAt, lastAt });
        };
        return step();
      }
      case 'spread': {
        const total = Math.round(command.perSecond * command.seconds);
        const started = performance.now();
        let i = 0;
        let firstAt = 0;
        let lastAt = 0;
        // Paced against the clock, not by timer count, so timer drift does not lower the rate.
        const timer = setInterval(() => {
          const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * command.perSecond));
          for (; i < due; i++) {
            lastAt = emitOne(command.accounts[i % command.accounts.length]!, command.tag, i);
            firstAt ||= lastAt;
          }
          if (i >= total) {
            clearInterval(timer);
            send({ op: 'emitted', count: i, firstAt, lastAt });
          }
        }, 2);
        return;
      }
    }
  });
  process.on('disconnect', () => void sim.close().then(() => process.exit(0)));
  send({ op: 'ready' });
}

function reply<T>(worker: Worker): Promise<T> {
  return new Promise((resolve) => worker.once('message', (m) => resolve(m as T)));
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}
