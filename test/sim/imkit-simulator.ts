import { randomBytes } from 'node:crypto';
import {
  createServer,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo, Socket as NetSocket } from 'node:net';
import { Server as IoServer, type Socket } from 'socket.io';

/**
 * An in-process IMKIT server for tests, the demo, the soak and the benchmark: a real Socket.IO 4
 * server and IMKIT's REST endpoints on one http server, speaking IMKIT's client protocol as the
 * bridge uses it (conf, auth2 with a `{ RC, RM, result }` ack, app-level ping/pong, per-socket
 * encoding, REST catch-up; docs/architecture.md describes each). Fault knobs let tests break it on purpose.
 *
 * Usage:
 *   const sim = await ImkitSimulator.start({ pingIntervalMs: 200 });
 *   const token = sim.issueToken('bot');            // or POST /admin/clients with sim.apiKey
 *   // point the bridge at sim.url, account 'bot' with that token
 *   sim.sendMessage('room-1', 'hi', { members: ['bot', 'alice'], sender: 'alice' });
 *   sim.emit('bot', 'lastRead', { roomID: 'room-1', memberID: 'bot', messageID: 'm1' });
 *   await sim.restart({ abrupt: true, downtimeMs: 500 });
 *   await sim.close();
 *
 * Half-open TCP is not simulated here: put `test/support/tcp-proxy.ts` between client and
 * simulator and freeze it, which keeps the TCP connection open while no byte flows.
 */

export type SocketEncoding = 'none' | 'base64' | 'custom';

/**
 * How auth2 is acknowledged. `plain`: the envelope object. `encoded`: the envelope encoded like
 * events on that socket (base64 of JSON, or the custom codec), as some servers do. `none`: never
 * acked. `null` and `NO ACK`: acked with that value, which IMKIT clients treat as a failure.
 */
export type AckStyle = 'plain' | 'encoded' | 'none' | 'null' | 'NO ACK';

export interface SimulatorCodec {
  encode(value: unknown): string;
}

export interface SimulatorOptions {
  /** Port to listen on; 0 (default) picks a free one. `restart` keeps the chosen port. */
  port?: number;
  /** Required as `IM-API-KEY` by admin endpoints. Default `sim-api-key`. */
  apiKey?: string;
  /** Required as `IM-CLIENT-KEY` (or `CLIENT_KEY`) by client endpoints. Default `sim-client-key`. */
  clientKey?: string;
  /** Interval of the app-level `ping` event to authenticated sockets, ms; 0 turns it off. Default 25 000. */
  pingIntervalMs?: number;
  /** Order of each REST message page. Default `desc`, so clients must sort locally. */
  messageOrder?: 'asc' | 'desc';
  /** Default `plain`; can be changed at runtime through `ackStyle`. */
  ackStyle?: AckStyle;
  /** Codec for sockets that sent `conf { encoding: 'custom' }`; without it such sockets get base64. */
  codec?: SimulatorCodec;
  /** Lifetime of tokens issued without an explicit ttl, ms. Default 7 days (IMKIT's default). */
  tokenTtlMs?: number;
  /** Engine-level (Socket.IO) ping interval and timeout, ms. Defaults are Socket.IO's 25 000 / 20 000. */
  enginePingIntervalMs?: number;
  enginePingTimeoutMs?: number;
  /** Messages kept for REST catch-up; the oldest are forgotten beyond this (long soaks). Default 100 000. */
  maxStoredMessages?: number;
}

export interface SimClient {
  _id: string;
  nickname: string;
  avatarUrl: string;
}

export interface SimMessage {
  _id: string;
  id: string;
  room: string;
  message: unknown;
  messageType: string;
  sender: { _id: string; nickname: string; avatarUrl: string; isRobot: boolean };
  appID: string;
  messageTime: string;
  messageTimeMS: number;
  createdAtMS: number;
  updatedAtMS: number;
  editedAt?: string;
}

export interface SimRoom {
  _id: string;
  name: string;
  members: string[];
  updatedAtMS: number;
}

/** One auth2 call as the simulator received it. */
export interface AuthRecord {
  at: number;
  token: unknown;
  extra: unknown;
  clientId?: string;
  ok: boolean;
}

export interface SimulatorStats {
  /** Socket.IO connections accepted since start (across restarts). */
  connections: number;
  confs: number;
  authOk: number;
  authFailed: number;
  pongs: number;
}

interface TokenEntry {
  clientId: string;
  expiresAt: number;
}

interface SocketState {
  encoding: SocketEncoding;
  clientId?: string;
}

const APP_ID = 'sim-app';

export class ImkitSimulator {
  readonly port: number;
  readonly url: string;
  readonly apiKey: string;
  readonly clientKey: string;
  /** How auth2 is acknowledged from now on. */
  ackStyle: AckStyle;
  /** When true every auth2 and every token-authenticated REST call is refused with 401. */
  rejectAllTokens = false;
  readonly stats: SimulatorStats = { connections: 0, confs: 0, authOk: 0, authFailed: 0, pongs: 0 };
  /** Every auth2 received, oldest first (tests assert what `extra` carried). */
  readonly auths: AuthRecord[] = [];
  /**
   * Clients whose REST catch-up calls (rooms, room messages) are never answered while listed: an
   * IMKIT API that hangs. Calls made after a client is removed are answered as usual.
   */
  readonly restHeld = new Set<string>();
  /** REST catch-up calls received, per client, answered or held. */
  readonly restCalls = new Map<string, number>();
  /** Each REST catch-up call is answered this many ms late, so calls that run at the same time overlap. */
  restDelayMs = 0;
  /** REST catch-up calls being answered (delayed or held) now, and the most at one time since start. */
  readonly restInFlight = { now: 0, max: 0 };

  private readonly options: SimulatorOptions;
  private readonly clients = new Map<string, SimClient>();
  private readonly tokens = new Map<string, TokenEntry>();
  private readonly rooms = new Map<string, SimRoom>();
  private readonly messages: SimMessage[] = [];
  private readonly silenced = new Set<string>();
  private http: HttpServer | undefined;
  private io: IoServer | undefined;
  private readonly tcp = new Set<NetSocket>();
  private pingTimer: NodeJS.Timeout | undefined;
  private lastMessageMs = 0;
  private closed = false;

  private constructor(options: SimulatorOptions, port: number) {
    this.options = options;
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
    this.apiKey = options.apiKey ?? 'sim-api-key';
    this.clientKey = options.clientKey ?? 'sim-client-key';
    this.ackStyle = options.ackStyle ?? 'plain';
  }

  static async start(options: SimulatorOptions = {}): Promise<ImkitSimulator> {
    const { http, io, port } = await ImkitSimulator.listen(options.port ?? 0, options);
    const sim = new ImkitSimulator(options, port);
    sim.attach(http, io);
    return sim;
  }

  // ---- clients and tokens -------------------------------------------------------------------

  addClient(id: string, nickname = id): SimClient {
    const existing = this.clients.get(id);
    if (existing) return existing;
    const client = { _id: id, nickname, avatarUrl: '' };
    this.clients.set(id, client);
    return client;
  }

  /** Issues a fresh token for `clientId` (creating the client if needed). */
  issueToken(clientId: string, ttlMs = this.options.tokenTtlMs ?? 7 * 24 * 3600_000): string {
    this.addClient(clientId);
    const token = `tok_${randomBytes(18).toString('base64url')}`;
    this.tokens.set(token, { clientId, expiresAt: Date.now() + ttlMs });
    return token;
  }

  /** Accepts `token` for `clientId` as if this simulator had issued it: several simulators serving one client share tokens. */
  adoptToken(token: string, clientId: string, ttlMs = this.options.tokenTtlMs ?? 7 * 24 * 3600_000): void {
    this.addClient(clientId);
    this.tokens.set(token, { clientId, expiresAt: Date.now() + ttlMs });
  }

  /** Makes `token` expired from now on. */
  expireToken(token: string): void {
    const entry = this.tokens.get(token);
    if (entry) entry.expiresAt = Date.now() - 1;
  }

  /** Expiry (epoch ms) of a token, for tests of refresh timing. */
  tokenExpiry(token: string): number | undefined {
    return this.tokens.get(token)?.expiresAt;
  }

  // ---- emitting -----------------------------------------------------------------------------

  /** Sends `event` to every authenticated socket of `clientId`, encoded per that socket's `conf`. */
  emit(clientId: string, event: string, payload: unknown): number {
    let sent = 0;
    for (const socket of this.socketsOf(clientId)) {
      socket.emit(event, this.encodeFor(socket, payload));
      sent++;
    }
    return sent;
  }

  /** Sends `arg` as-is, unencoded, for malformed-payload tests. */
  emitRaw(clientId: string, event: string, arg: unknown): number {
    let sent = 0;
    for (const socket of this.socketsOf(clientId)) {
      socket.emit(event, arg);
      sent++;
    }
    return sent;
  }

  /** Authenticated sockets currently connected for `clientId`. */
  connectedCount(clientId: string): number {
    return this.socketsOf(clientId, true).length;
  }

  /** Authenticated sockets per client, in one pass over the sockets (for thousands of clients). */
  connectedCounts(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const socket of this.io?.sockets.sockets.values() ?? []) {
      const { clientId } = socket.data as SocketState;
      if (clientId !== undefined) counts.set(clientId, (counts.get(clientId) ?? 0) + 1);
    }
    return counts;
  }

  // ---- messages -----------------------------------------------------------------------------

  /**
   * Stores a chat message in `room` and, unless `emit: false` (the bridge is disconnected), emits
   * `chat message` to every connected member. `members` adds members to the room.
   */
  sendMessage(
    room: string,
    message: unknown,
    opts: { members?: string[]; sender?: string; messageType?: string; emit?: boolean; atMs?: number } = {},
  ): SimMessage {
    const r = this.room(room, opts.members);
    // `atMs` stamps a chosen time, e.g. several messages in one millisecond of a busy room.
    const now = opts.atMs ?? this.nextMessageTime();
    const senderId = opts.sender ?? r.members[0] ?? 'sim-sender';
    const sender = this.addClient(senderId);
    const id = randomBytes(12).toString('hex');
    const msg: SimMessage = {
      _id: id,
      id,
      room,
      message,
      messageType: opts.messageType ?? 'text',
      sender: { ...sender, isRobot: false },
      appID: APP_ID,
      messageTime: new Date(now).toISOString(),
      messageTimeMS: now,
      createdAtMS: now,
      updatedAtMS: now,
    };
    this.messages.push(msg);
    // Trimmed in batches so a long soak does not pay an O(n) shift per message.
    const max = this.options.maxStoredMessages ?? 100_000;
    if (this.messages.length > max * 1.1) this.messages.splice(0, this.messages.length - max);
    r.updatedAtMS = now;
    if (opts.emit !== false) this.emitToRoom(r, msg);
    return structuredClone(msg);
  }

  /** Stores a message without emitting it: it happened while the bridge was away. */
  storeMessage(
    room: string,
    message: unknown,
    opts: { members?: string[]; sender?: string; atMs?: number } = {},
  ): SimMessage {
    return this.sendMessage(room, message, { ...opts, emit: false });
  }

  /** Edits a stored message: same `_id`, new `message` and `updatedAtMS`. */
  editMessage(id: string, message: unknown, opts: { emit?: boolean } = {}): SimMessage {
    return this.updateMessage(id, { message }, opts.emit);
  }

  /** Recalls a stored message: same `_id`, `messageType: 'recall'`, `message: ''`. */
  recallMessage(id: string, opts: { emit?: boolean } = {}): SimMessage {
    return this.updateMessage(id, { message: '', messageType: 'recall' }, opts.emit);
  }

  /** Every stored message, oldest first (copies). */
  storedMessages(): SimMessage[] {
    return structuredClone(this.messages);
  }

  // ---- faults -------------------------------------------------------------------------------

  /** Server-side disconnect of every socket (the clients see `io server disconnect`). */
  dropAll(): void {
    this.io?.disconnectSockets(true);
  }

  /** Stops (or resumes) pings and events to `clientId` while its sockets stay connected. */
  silence(clientId: string, on = true): void {
    if (on) this.silenced.add(clientId);
    else this.silenced.delete(clientId);
  }

  /**
   * Takes the server down. Graceful closes every socket with a disconnect packet; abrupt destroys
   * the TCP connections with no goodbye, like a crashed process. `up()` brings it back.
   */
  async down(opts: { abrupt?: boolean } = {}): Promise<void> {
    const { http, io } = this;
    if (!http || !io) return;
    this.http = undefined;
    this.io = undefined;
    clearInterval(this.pingTimer);
    if (opts.abrupt) for (const s of this.tcp) s.destroy();
    else io.disconnectSockets(true);
    this.tcp.clear();
    await new Promise<void>((resolve) => {
      io.close(() => resolve());
      http.closeAllConnections();
    });
  }

  /** Listens again on the same port. */
  async up(): Promise<void> {
    if (this.closed || this.http) return;
    const { http, io } = await ImkitSimulator.listen(this.port, this.options);
    this.attach(http, io);
  }

  /** `down` then `up`, optionally staying down `downtimeMs`. */
  async restart(opts: { abrupt?: boolean; downtimeMs?: number } = {}): Promise<void> {
    await this.down(opts);
    if (opts.downtimeMs) await new Promise((r) => setTimeout(r, opts.downtimeMs));
    await this.up();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.down({ abrupt: true });
  }

  // ---- internals ----------------------------------------------------------------------------

  private static async listen(
    port: number,
    options: SimulatorOptions,
  ): Promise<{ http: HttpServer; io: IoServer; port: number }> {
    const http = createServer();
    const io = new IoServer(http, {
      pingInterval: options.enginePingIntervalMs ?? 25_000,
      pingTimeout: options.enginePingTimeoutMs ?? 20_000,
    });
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject);
      http.listen(port, '127.0.0.1', () => {
        http.off('error', reject);
        resolve();
      });
    });
    return { http, io, port: (http.address() as AddressInfo).port };
  }

  private attach(http: HttpServer, io: IoServer): void {
    this.http = http;
    this.io = io;
    http.on('connection', (s: NetSocket) => {
      this.tcp.add(s);
      s.on('close', () => this.tcp.delete(s));
    });
    // Socket.IO takes /socket.io/ requests and hands every other request to this listener.
    http.on('request', (req, res) => {
      if (req.url?.startsWith('/socket.io/')) return;
      this.handleRest(req, res).catch((err: unknown) => this.send(res, 500, 500, String(err)));
    });
    io.on('connection', (socket) => this.onConnection(socket));
    const every = this.options.pingIntervalMs ?? 25_000;
    if (every > 0) {
      this.pingTimer = setInterval(() => {
        for (const socket of io.sockets.sockets.values()) {
          const state = socket.data as SocketState;
          if (state.clientId && !this.silenced.has(state.clientId)) socket.emit('ping');
        }
      }, every);
      this.pingTimer.unref();
    }
  }

  private onConnection(socket: Socket): void {
    this.stats.connections++;
    const state: SocketState = { encoding: 'none' };
    socket.data = state;
    socket.on('conf', (conf: unknown, ack?: unknown) => {
      this.stats.confs++;
      const encoding = (conf as { encoding?: unknown } | null)?.encoding;
      if (encoding === 'base64' || encoding === 'custom') state.encoding = encoding;
      if (typeof ack === 'function') ack({ RC: 0, RM: 'OK', result: { encoding: state.encoding } });
    });
    socket.on('auth2', (...args: unknown[]) => {
      const ack =
        typeof args[args.length - 1] === 'function' ? (args.pop() as (v: unknown) => void) : undefined;
      const [token, extra] = args;
      const clientId = this.validToken(token);
      this.auths.push({ at: Date.now(), token, extra, clientId, ok: clientId !== undefined });
      if (clientId === undefined) {
        this.stats.authFailed++;
        this.ack(socket, ack, { RC: 401, RM: 'Unauthorized: invalid or expired token' });
        // The ack packet is written before the disconnect packet, so the client sees both.
        setTimeout(() => socket.disconnect(true), 10);
        return;
      }
      this.stats.authOk++;
      state.clientId = clientId;
      void socket.join(`client:${clientId}`);
      this.ack(socket, ack, { RC: 0, RM: 'OK', result: { client: this.clients.get(clientId) } });
    });
    socket.on('pong', () => {
      this.stats.pongs++;
    });
  }

  private ack(socket: Socket, ack: ((v: unknown) => void) | undefined, envelope: unknown): void {
    if (!ack) return;
    switch (this.ackStyle) {
      case 'none':
        return;
      case 'null':
        return ack(null);
      case 'NO ACK':
        return ack('NO ACK');
      case 'encoded':
        return ack(this.encodeFor(socket, envelope));
      case 'plain':
        return ack(envelope);
    }
  }

  private encodeFor(socket: Socket, payload: unknown): unknown {
    const { encoding } = socket.data as SocketState;
    if (encoding === 'custom' && this.options.codec) return this.options.codec.encode(payload);
    if (encoding === 'none') return payload;
    // A bare string payload (myPrefDelete's key) is base64 of the string itself, not of JSON.
    const text = typeof payload === 'string' ? payload : JSON.stringify(payload);
    return Buffer.from(text, 'utf8').toString('base64');
  }

  private socketsOf(clientId: string, includeSilenced = false): Socket[] {
    if (!this.io || (!includeSilenced && this.silenced.has(clientId))) return [];
    return [...this.io.sockets.sockets.values()].filter((s) => (s.data as SocketState).clientId === clientId);
  }

  private validToken(token: unknown): string | undefined {
    if (this.rejectAllTokens || typeof token !== 'string') return undefined;
    const entry = this.tokens.get(token);
    if (!entry || entry.expiresAt <= Date.now()) return undefined;
    return entry.clientId;
  }

  private room(id: string, members: string[] = []): SimRoom {
    let room = this.rooms.get(id);
    if (!room) {
      room = { _id: id, name: id, members: [], updatedAtMS: 0 };
      this.rooms.set(id, room);
    }
    for (const m of members) if (!room.members.includes(m)) room.members.push(m);
    return room;
  }

  /** Strictly increasing, so `afterTime` paging and local sorting have a total order to check. */
  private nextMessageTime(): number {
    this.lastMessageMs = Math.max(Date.now(), this.lastMessageMs + 1);
    return this.lastMessageMs;
  }

  private updateMessage(id: string, patch: Partial<SimMessage>, emit = true): SimMessage {
    const msg = this.messages.find((m) => m._id === id);
    if (!msg) throw new Error(`no message ${id}`);
    const now = this.nextMessageTime();
    Object.assign(msg, patch, { updatedAtMS: now, editedAt: new Date(now).toISOString() });
    const room = this.room(msg.room);
    room.updatedAtMS = now;
    if (emit) this.emitToRoom(room, msg);
    return structuredClone(msg);
  }

  private emitToRoom(room: SimRoom, msg: SimMessage): void {
    for (const member of room.members) this.emit(member, 'chat message', msg);
  }

  // ---- REST ---------------------------------------------------------------------------------

  private async handleRest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    const path = url.pathname;
    if (req.method === 'POST' && path === '/admin/clients') {
      if (req.headers['im-api-key'] !== this.apiKey) return this.send(res, 401, 401, 'invalid IM-API-KEY');
      const body = (await readJson(req)) as { _id?: unknown; nickname?: unknown; issueAccessToken?: unknown };
      if (typeof body?._id !== 'string' || !body._id) return this.send(res, 400, 400, '_id is required');
      const client = this.addClient(body._id, typeof body.nickname === 'string' ? body.nickname : body._id);
      if (body.issueAccessToken !== true) return this.send(res, 200, 0, 'OK', { ...client });
      const token = this.issueToken(body._id);
      const expirationDate = new Date(this.tokens.get(token)!.expiresAt).toISOString();
      return this.send(res, 200, 0, 'OK', { ...client, token, expirationDate });
    }
    if (req.method === 'GET' && path === '/admin/messages') {
      if (req.headers['im-api-key'] !== this.apiKey) return this.send(res, 401, 401, 'invalid IM-API-KEY');
      const start = parseTime(url.searchParams.get('startDate')) ?? 0;
      const end = parseTime(url.searchParams.get('endDate')) ?? Number.MAX_SAFE_INTEGER;
      const limit = intParam(url.searchParams.get('limit'), 100);
      const data = this.messages
        .filter((m) => m.messageTimeMS >= start && m.messageTimeMS <= end)
        .sort((a, b) => b.messageTimeMS - a.messageTimeMS);
      return this.send(res, 200, 0, 'OK', {
        totalCount: data.length,
        data: structuredClone(data.slice(0, limit)),
      });
    }
    if (req.method === 'GET' && (path === '/rooms' || /^\/rooms\/[^/]+\/messages\/v3$/.test(path))) {
      const clientId = this.restClient(req);
      if (clientId === undefined) return this.send(res, 401, 401, 'invalid client key or token');
      this.restCalls.set(clientId, (this.restCalls.get(clientId) ?? 0) + 1);
      this.restInFlight.now++;
      this.restInFlight.max = Math.max(this.restInFlight.max, this.restInFlight.now);
      if (this.restHeld.has(clientId)) return;
      try {
        if (this.restDelayMs > 0) await new Promise((r) => setTimeout(r, this.restDelayMs));
      } finally {
        this.restInFlight.now--;
      }
      if (path === '/rooms') {
        const after = parseTime(url.searchParams.get('updatedAfter')) ?? 0;
        const skip = intParam(url.searchParams.get('skip'), 0);
        const limit = intParam(url.searchParams.get('limit'), 20);
        const mine = [...this.rooms.values()]
          .filter((r) => r.members.includes(clientId) && r.updatedAtMS > after)
          .sort((a, b) => b.updatedAtMS - a.updatedAtMS);
        const data = mine.slice(skip, skip + limit);
        return this.send(res, 200, 0, 'OK', { totalCount: mine.length, data: structuredClone(data) });
      }
      const roomId = decodeURIComponent(path.split('/')[2]!);
      const room = this.rooms.get(roomId);
      if (!room || !room.members.includes(clientId)) return this.send(res, 404, 404, 'room not found');
      const after = parseTime(url.searchParams.get('afterTime')) ?? 0;
      const limit = intParam(url.searchParams.get('limit'), 20);
      const matching = this.messages
        .filter((m) => m.room === roomId && m.messageTimeMS > after)
        .sort((a, b) => a.messageTimeMS - b.messageTimeMS);
      // The page is the oldest `limit` after the cursor; its order inside is the configured one.
      const page = matching.slice(0, limit);
      if ((this.options.messageOrder ?? 'desc') === 'desc') page.reverse();
      return this.send(res, 200, 0, 'OK', { totalCount: matching.length, data: structuredClone(page) });
    }
    return this.send(res, 404, 404, `no route ${req.method} ${path}`);
  }

  /** The client id behind a client-authenticated REST call, accepting both header spellings. */
  private restClient(req: IncomingMessage): string | undefined {
    const key = req.headers['im-client-key'] ?? req.headers['client_key'];
    if (key !== this.clientKey) return undefined;
    return this.validToken(req.headers['im-authorization'] ?? req.headers['authorization']);
  }

  private send(res: ServerResponse, status: number, rc: number, rm: string, result?: unknown): void {
    if (res.headersSent) return;
    const body = JSON.stringify(result === undefined ? { RC: rc, RM: rm } : { RC: rc, RM: rm, result });
    res.writeHead(status, { 'content-type': 'application/json' }).end(body);
  }
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  if (!text) return {};
  try {
    return JSON.parse(text);
  } catch {
    return {};
  }
}

/** IMKIT accepts ISO dates or epoch milliseconds. */
function parseTime(value: string | null): number | undefined {
  if (value === null || value === '') return undefined;
  if (/^\d+$/.test(value)) return Number(value);
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : ms;
}

function intParam(value: string | null, fallback: number): number {
  const n = value === null ? NaN : Number.parseInt(value, 10);
  return Number.isFinite(n) && n >= 0 ? n : fallback;
}
