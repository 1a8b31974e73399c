/**
 * The IMKIT simulator in a process of its own for the benchmark, so the CPU it spends emitting is
 * not charged to the relay under test. Driven over IPC by bench/bench.ts (see SimCommand).
 */
import { ImkitSimulator } from '../test/sim/imkit-simulator.js';

export type SimCommand =
  | { op: 'tokens'; accounts: string[] }
  | { op: 'burst'; account: string; count: number; tag: string }
  | { op: 'rate'; account: string; perSecond: number; seconds: number; tag: string }
  | { op: 'connected'; account: string };

export type SimReply =
  | { op: 'ready'; url: string }
  | { op: 'tokens'; tokens: Record<string, string> }
  | { op: 'emitted'; count: number; firstAt: number; lastAt: number }
  | { op: 'connected'; count: number };

/** Chunk of emits per turn of the event loop, so socket writes flush while a burst is produced. */
const CHUNK = 250;
const FILLER = 'Release train 24.11 is green; please verify the staging links before the stand-up. ';

const sim = await ImkitSimulator.start({ pingIntervalMs: 10_000, maxStoredMessages: 50_000 });
const reply = (message: SimReply) => process.send!(message);

/** A realistic chat message (~600 bytes on the wire) carrying its emit time for latency. */
function emitOne(account: string, tag: string, i: number): number {
  // Wall-clock ms, the same clock the receiver stamps arrivals with.
  const sentAt = Date.now();
  sim.sendMessage(
    `bench-room-${account}`,
    { text: `${FILLER}${tag} #${i}`, sentAt, tag, seq: i },
    {
      members: [account, 'alice'],
      sender: 'alice',
    },
  );
  return sentAt;
}

process.on('message', (command: SimCommand) => {
  switch (command.op) {
    case 'tokens': {
      const tokens: Record<string, string> = {};
      for (const id of command.accounts) tokens[id] = sim.issueToken(id);
      reply({ op: 'tokens', tokens });
      return;
    }
    case 'connected':
      reply({ op: 'connected', count: sim.connectedCount(command.account) });
      return;
    case 'burst': {
      let i = 0;
      let firstAt = 0;
      let lastAt = 0;
      const step = () => {
        for (const end = Math.min(command.count, i + CHUNK); i < end; i++) {
          lastAt = emitOne(command.account, command.tag, i);
          firstAt ||= lastAt;
        }
        if (i < command.count) setImmediate(step);
        else reply({ op: 'emitted', count: i, firstAt, lastAt });
      };
      step();
      return;
    }
    case 'rate': {
      const total = Math.round(command.perSecond * command.seconds);
      const started = performance.now();
      let i = 0;
      let firstAt = 0;
      let lastAt = 0;
      // Paced against the clock, not by timer count, so timer drift does not lower the rate.
      const timer = setInterval(() => {
        const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * command.perSecond));
        for (; i < due; i++) {
          lastAt = emitOne(command.account, command.tag, i);
          firstAt ||= lastAt;
        }
        if (i >= total) {
          clearInterval(timer);
          reply({ op: 'emitted', count: i, firstAt, lastAt });
        }
      }, 2);
      return;
    }
  }
});
process.on('disconnect', () => void sim.close().then(() => process.exit(0)));
reply({ op: 'ready', url: sim.url });
