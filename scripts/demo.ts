/**
 * `npm run demo`: the whole bridge on this machine with nothing to configure. Starts a private
 * redis-server (or uses $REDIS_URL), the IMKIT simulator playing a short conversation, a local webhook
 * sink that verifies every Standard Webhooks signature, and `imkit-bridge run` as a child process.
 * Prints one line per verified delivery and a summary.
 *
 *   npm run demo                  play the conversation, wait for every delivery, stop
 *   npm run demo -- --events N    exit 0 once N deliveries are verified, 1 if not within a minute
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, openSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ImkitSimulator } from '../test/sim/imkit-simulator.js';
import { WebhookReceiver, type ReceivedRequest } from '../test/support/receiver.js';
import { RedisServer, hasRedisServer } from '../test/support/redis.js';

const DEADLINE_MS = 60_000;
const SECRET = 'whsec_ZGVtby1zZWNyZXQtZm9yLWlta2l0LWJyaWRnZS1kZW1v';
const BOT = 'demo-bot';

const { values } = parseArgs({ options: { events: { type: 'string' } } });
const wanted = values.events === undefined ? undefined : Number(values.events);
if (wanted !== undefined && (!Number.isInteger(wanted) || wanted < 1)) {
  console.error('--events takes a positive whole number');
  process.exit(1);
}
const externalRedis = process.env.REDIS_URL || undefined;
if (!externalRedis && !hasRedisServer()) {
  console.error('demo needs redis-server on PATH (apt-get install redis-server) or REDIS_URL set');
  process.exit(1);
}

const dir = mkdtempSync(join(tmpdir(), 'imkit-bridge-demo-'));
const redis = externalRedis ? undefined : await RedisServer.start();
const redisUrl = externalRedis ?? redis!.url;
const sim = await ImkitSimulator.start({ pingIntervalMs: 10_000 });
const sink = await WebhookReceiver.start({ secret: SECRET });
sim.addClient(BOT, 'Audit bot');
const token = sim.issueToken(BOT);

const configFile = join(dir, 'bridge.yaml');
writeFileSync(
  configFile,
  `# Written by npm run demo
redis: { url: "${redisUrl}", prefix: "imkit-bridge-demo-${process.pid}" }
server: { host: 127.0.0.1, port: 0 }
imkit: { url: "${sim.url}", clientKey: ${sim.clientKey}, apiKey: ${sim.apiKey} }
accounts:
  - id: ${BOT}
    token: \${env:DEMO_BOT_TOKEN}
    encoding: base64
webhooks:
  - id: demo-sink
    url: "${sink.url}"
    secret: ${SECRET}
    events: ["*", "bridge.connected"]
    retry: { schedule: [200ms, 1s, 5s] }
log: { level: warn }
`,
);
const logFile = join(dir, 'bridge.log');
const bridge = spawn(process.execPath, ['dist/cli.js', 'run', '--config', configFile], {
  env: { ...process.env, DEMO_BOT_TOKEN: token },
  stdio: ['ignore', openSync(logFile, 'a'), openSync(logFile, 'a')],
});
let bridgeExit: number | null | undefined;
bridge.once('exit', (code) => (bridgeExit = code));

console.log(`imkit-bridge demo: simulator ${sim.url}, sink ${sink.url}, redis ${redisUrl}`);
console.log(`bridge config ${configFile}, log ${logFile}\n`);

const started = Date.now();
let printed = 0;
const seen = new Set<string>();
let unverified = 0;
let duplicates = 0;

/** The few payload fields the demo prints; IMKIT payloads carry more. */
interface DemoData {
  _id?: string;
  message?: unknown;
  messageType?: string;
  editedAt?: string;
  sender?: { _id?: string } | string;
  memberID?: string;
  messageID?: string;
  room?: string;
}

function senderOf(d: DemoData): string {
  return typeof d.sender === 'string' ? d.sender : (d.sender?._id ?? 'someone');
}

function describe(request: ReceivedRequest): string {
  const body = JSON.parse(request.body) as {
    id: string;
    type: string;
    timestamp: string;
    data: DemoData | null;
  };
  const d: DemoData = body.data ?? {};
  let what = '';
  if (body.type === 'chat message') {
    const text = typeof d.message === 'string' ? d.message : JSON.stringify(d.message);
    what =
      d.messageType === 'recall'
        ? `${senderOf(d)} recalled ${d._id}`
        : `${senderOf(d)}: ${JSON.stringify(text)}${d.editedAt ? ' (edited)' : ''}`;
  } else if (body.type === 'lastRead') what = `${d.memberID} read up to ${d.messageID}`;
  else if (body.type === 'typing') what = `${senderOf(d)} is typing in ${d.room}`;
  else if (body.type === 'bridge.connected') what = `session live`;
  else what = JSON.stringify(d).slice(0, 60);
  const latency = request.at - Date.parse(body.timestamp);
  return `${request.verified ? 'verified' : 'UNVERIFIED'}  ${body.id}  ${body.type.padEnd(16)} ${what}  (${latency} ms)`;
}

function drainPrints(): void {
  for (; printed < sink.requests.length; printed++) {
    const request = sink.requests[printed]!;
    if (request.status === undefined || request.status >= 300) continue;
    const id = String(request.headers['webhook-id']);
    if (seen.has(id)) duplicates++;
    seen.add(id);
    if (!request.verified) unverified++;
    console.log(describe(request));
  }
}

async function until(check: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline && bridgeExit === undefined) {
    drainPrints();
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  drainPrints();
  return check();
}

async function playConversation(): Promise<number> {
  const members = [BOT, 'alice', 'bob'];
  const room = 'room-launch';
  const m1 = sim.sendMessage(room, 'Morning! Is the launch still on for 10:00? 🚀', {
    members,
    sender: 'alice',
  });
  sim.emit(BOT, 'typing', { room, message: 'typing', sender: 'bob' });
  const m2 = sim.sendMessage(room, 'Yes — "final" build is green ✅', { members, sender: 'bob' });
  sim.emit(BOT, 'lastRead', { roomID: room, memberID: 'alice', messageID: m2._id });
  sim.editMessage(m2._id, 'Yes — "final" build is green ✅ (tagged v2.4.0)');
  const m3 = sim.sendMessage(room, 'oops, wrong room', { members, sender: 'alice' });
  sim.recallMessage(m3._id);
  sim.sendMessage(room, 'مرحبا 👋 — see you at the stand-up', { members, sender: 'bob' });
  sim.emit(BOT, 'lastRead', { roomID: room, memberID: 'bob', messageID: m1._id });
  return 9;
}

let code = 0;
try {
  const live = await until(() => seen.size >= 1, 20_000);
  if (!live) throw new Error(`the bridge did not connect (exit ${bridgeExit ?? 'none'}); see ${logFile}`);
  const expected = 1 + (await playConversation());
  const target = wanted ?? expected;
  const ok = await until(() => seen.size >= target, DEADLINE_MS - (Date.now() - started));
  const latencies = sink.requests
    .filter((r) => r.status !== undefined && r.status < 300)
    .map((r) => r.at - Date.parse((JSON.parse(r.body) as { timestamp: string }).timestamp))
    .sort((a, b) => a - b);
  const p50 = latencies[Math.floor(latencies.length / 2)] ?? 0;
  console.log(
    `\n${seen.size} events delivered, ${seen.size - unverified} signatures verified, ${duplicates} duplicate deliveries, ` +
      `median latency ${p50} ms, in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
  if (!ok) {
    console.error(`expected ${target} verified deliveries within ${DEADLINE_MS / 1000} s; see ${logFile}`);
    code = 1;
  } else if (unverified > 0) {
    console.error(`${unverified} deliveries failed signature verification`);
    code = 1;
  }
} catch (err) {
  console.error(String((err as Error).message ?? err));
  code = 1;
} finally {
  if (bridgeExit === undefined) {
    const exited = new Promise((r) => bridge.once('exit', r));
    bridge.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 30_000))]);
  }
  await sink.close();
  await sim.close();
  await redis?.close();
}
process.exit(code);
