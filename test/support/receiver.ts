import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Webhook } from 'standardwebhooks';

export interface ReceivedRequest {
  readonly at: number;
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  /** Whether `standardwebhooks` accepted the signature with the receiver's secret (undefined: no secret). */
  readonly verified: boolean | undefined;
  /** The status answered; undefined while pending or when the request was hung up or dropped. */
  status?: number;
}

/** What to do with one request. `hang` never answers; `destroy` drops the socket; `slowBody` trickles the body. */
export interface ScriptedResponse {
  readonly status?: number;
  readonly headers?: Record<string, string>;
  readonly body?: string;
  readonly delayMs?: number;
  readonly hang?: boolean;
  readonly destroy?: boolean;
  /** Send headers at once, then one body byte every `slowBodyMs` forever. */
  readonly slowBodyMs?: number;
}

type Responder = ScriptedResponse | ((req: ReceivedRequest, index: number) => ScriptedResponse);

/**
 * A real HTTP webhook receiver on 127.0.0.1 for tests, demo and soak: records every request, verifies
 * Standard Webhooks signatures, answers from a script, and can be stopped and restarted (outage).
 */
export class WebhookReceiver {
  readonly requests: ReceivedRequest[] = [];
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly script: ScriptedResponse[] = [];
  private fallback: Responder = { status: 204 };
  private port = 0;

  constructor(private readonly secret?: string) {}

  static async start(options: { secret?: string; port?: number } = {}): Promise<WebhookReceiver> {
    const receiver = new WebhookReceiver(options.secret);
    await receiver.listen(options.port ?? 0);
    return receiver;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}/hook`;
  }

  /** Answers for the next requests, in order; after they are used up, `respondWith`'s default applies. */
  enqueue(...responses: ScriptedResponse[]): this {
    this.script.push(...responses);
    return this;
  }

  respondWith(responder: Responder): this {
    this.fallback = responder;
    return this;
  }

  /** Event ids (webhook-id) of requests answered 2xx, in order. */
  deliveredIds(): string[] {
    return this.requests
      .filter((r) => r.status !== undefined && r.status < 300)
      .map((r) => String(r.headers['webhook-id']));
  }

  requestsFor(eventId: string): ReceivedRequest[] {
    return this.requests.filter((r) => r.headers['webhook-id'] === eventId);
  }

  async listen(port = this.port): Promise<void> {
    if (this.server) return;
    const server = createServer((req, res) => void this.handle(req, res));
    server.on('connection', (socket) => {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  /** Closes the listener and every open connection: the receiver is down until `listen()` again. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  async close(): Promise<void> {
    await this.stop();
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    let verified: boolean | undefined;
    if (this.secret) {
      try {
        new Webhook(this.secret).verify(body, req.headers as Record<string, string>);
        verified = true;
      } catch {
        verified = false;
      }
    }
    const record: ReceivedRequest = {
      at: Date.now(),
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      body,
      verified,
    };
    const index = this.requests.length;
    this.requests.push(record);
    const next = this.script.shift() ?? this.fallback;
    const response = typeof next === 'function' ? next(record, index) : next;
    if (response.delayMs) await new Promise((r) => setTimeout(r, response.delayMs));
    if (response.hang) return;
    if (response.destroy) {
      req.socket.destroy();
      return;
    }
    const status = response.status ?? 204;
    res.writeHead(status, response.headers);
    if (response.slowBodyMs) {
      const timer = setInterval(
        () => (res.destroyed ? clearInterval(timer) : res.write('.')),
        response.slowBodyMs,
      );
      res.on('close', () => clearInterval(timer));
      return;
    }
    res.end(response.body);
    record.status = status;
  }
}
