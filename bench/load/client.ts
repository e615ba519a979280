// A minimal keep-alive HTTP/1.1 client for load generation: one request at a time per connection,
// requests pre-serialized, responses parsed only as far as status and length. A generator that
// costs little CPU leaves the cores to the servers it measures (this machine has two).
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

export interface Target {
  readonly host: string;
  readonly port: number;
  readonly tls?: { readonly ca: string; readonly cert: string; readonly key: string };
}

const HEADER_END = Buffer.from('\r\n\r\n');
/** A server that stops answering fails the request (counted as an error) instead of hanging the bench. */
const REQUEST_TIMEOUT_MS = 30_000;
const CHUNKED_END = Buffer.from('0\r\n\r\n');

export class Connection {
  private socket: Socket | undefined;
  private buffered: Buffer = Buffer.alloc(0);
  private waiting: { resolve: (status: number) => void; reject: (error: Error) => void } | undefined;

  constructor(private readonly target: Target) {}

  /** Sends one request and resolves with the response's status once its body has arrived. */
  request(bytes: Buffer | string): Promise<number> {
    const socket = this.socket ?? this.open();
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      socket.write(bytes);
    });
  }

  close(): void {
    this.socket?.destroy();
  }

  private open(): Socket {
    const { host, port, tls } = this.target;
    const socket = tls ? tlsConnect({ host, port, ca: tls.ca, cert: tls.cert, key: tls.key }) : netConnect({ host, port });
    socket.setNoDelay(true);
    socket.setTimeout(REQUEST_TIMEOUT_MS, () => socket.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    const fail = (error?: Error) => {
      if (this.socket === socket) this.socket = undefined;
      this.buffered = Buffer.alloc(0);
      const waiting = this.waiting;
      this.waiting = undefined;
      waiting?.reject(error ?? new Error('connection closed'));
    };
    socket.on('error', fail);
    socket.on('close', () => fail());
    this.socket = socket;
    return socket;
  }

  private onData(chunk: Buffer): void {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    const end = this.buffered.indexOf(HEADER_END);
    if (end === -1) return;
    const head = this.buffered.toString('latin1', 0, end);
    const length = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    const bodyStart = end + 4;
    let complete: number;
    if (length) {
      complete = bodyStart + Number(length[1]);
      if (this.buffered.length < complete) return;
    } else if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
      const last = this.buffered.indexOf(CHUNKED_END, bodyStart);
      if (last === -1) return;
      complete = last + CHUNKED_END.length;
    } else complete = bodyStart;
    this.buffered = this.buffered.subarray(complete);
    const waiting = this.waiting;
    this.waiting = undefined;
    if (/\r\nconnection:\s*close/i.test(head)) this.socket?.end();
    waiting?.resolve(Number(head.slice(9, 12)));
  }
}
