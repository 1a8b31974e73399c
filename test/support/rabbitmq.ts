import { connect, type Channel, type ChannelModel, type GetMessage } from 'amqplib';

/** The RabbitMQ the broker suites use: `AMQP_URL`, else the machine's own on 127.0.0.1:5672. */
export function amqpUrl(): string {
  return process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672/';
}

/** A run-unique name for an exchange or queue, so suites never see each other's messages. */
export function uniqueName(what: string): string {
  return `imkit-t-${what}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * Sets up and inspects what a test needs on the shared broker (exchanges, queues, bindings) and
 * deletes all of it at the end.
 */
export class RabbitAdmin {
  private readonly exchanges = new Set<string>();
  private readonly queues = new Set<string>();

  private constructor(
    private readonly model: ChannelModel,
    private readonly channel: Channel,
  ) {}

  static async open(url = amqpUrl()): Promise<RabbitAdmin> {
    const model = await connect(url);
    return new RabbitAdmin(model, await model.createChannel());
  }

  async exchange(name: string, type = 'topic'): Promise<string> {
    this.exchanges.add(name);
    await this.channel.assertExchange(name, type, { durable: false, autoDelete: false });
    return name;
  }

  async queue(name: string, args: Record<string, unknown> = {}): Promise<string> {
    this.queues.add(name);
    await this.channel.assertQueue(name, { durable: false, arguments: args });
    return name;
  }

  async bind(queue: string, exchange: string, pattern = '#'): Promise<void> {
    await this.channel.bindQueue(queue, exchange, pattern);
  }

  /** Takes every message now in `queue`. */
  async drain(queue: string): Promise<GetMessage[]> {
    const messages: GetMessage[] = [];
    for (;;) {
      const message = await this.channel.get(queue, { noAck: true });
      if (message === false) return messages;
      messages.push(message);
    }
  }

  async close(): Promise<void> {
    for (const queue of this.queues) await this.channel.deleteQueue(queue);
    for (const exchange of this.exchanges) await this.channel.deleteExchange(exchange);
    await this.model.close();
  }
}
