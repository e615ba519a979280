import { readFileSync } from 'node:fs';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { validateHeaderName } from 'node:http';
import { resolve } from 'node:path';
import { pemCertificateBlocks } from '../certificate/verify.js';
import type { KeyFile, LoadedFile, PemFile } from './types.js';

/**
 * The problems the compile step finds, each with its key path, and the files it reads on the way:
 * each read once and parsed once (certificates into X509Certificate, keys into KeyObject), so
 * nothing downstream parses a PEM again.
 */
export class Problems {
  readonly list: string[] = [];
  readonly files: string[] = [];
  constructor(private readonly baseDir: string) {}

  add(path: string, message: string): void {
    this.list.push(`${path}: ${message}`);
  }

  /** A file's bytes, whatever they hold. */
  file(path: string, name: string): LoadedFile | undefined {
    return this.read(path, name);
  }

  private read(path: string, name: string): { path: string; contents: Buffer } | undefined {
    const absolute = resolve(this.baseDir, name);
    this.files.push(absolute);
    try {
      return { path: absolute, contents: readFileSync(absolute) };
    } catch (e) {
      this.add(path, `cannot read ${absolute}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
      return undefined;
    }
  }

  /** A PEM file holding at least one certificate, every one of which parses: parsed here, once. */
  certificates(path: string, name: string | undefined): PemFile | undefined {
    const f = name === undefined ? undefined : this.read(path, name);
    if (!f) return undefined;
    const blocks = pemCertificateBlocks(f.contents);
    if (blocks.length === 0) return void this.add(path, `${f.path} holds no PEM certificate`);
    try {
      return { ...f, certificates: blocks.map((b) => new X509Certificate(b)) };
    } catch {
      return void this.add(path, `${f.path} holds a certificate that does not parse`);
    }
  }

  /** A PEM private key that parses (never echoed). */
  privateKey(path: string, name: string | undefined): KeyFile | undefined {
    const f = name === undefined ? undefined : this.read(path, name);
    if (!f) return undefined;
    try {
      return { ...f, key: createPrivateKey(f.contents) };
    } catch {
      return void this.add(path, `${f.path} is not a readable PEM private key`);
    }
  }

  /** A header name as Node will send it, lower-cased. */
  headerName(path: string, name: string): string {
    try {
      validateHeaderName(name);
    } catch {
      this.add(path, `"${name}" is not a valid header name`);
    }
    return name.toLowerCase();
  }
}

