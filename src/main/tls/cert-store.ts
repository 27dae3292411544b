// Certificates and the ACME account key on disk, in <data-dir>/acme/ (mode 0700; files 0600):
//   account-key.pem     the ACME account's private key (ECDSA P-256)
//   <domain>.pem        the domain's private key followed by its certificate chain
// Key and chain share one file, replaced by rename, so that a crash never leaves a key beside
// another key's certificate; uWS reads both from the same path (OpenSSL skips the other block).

import { X509Certificate, createPrivateKey } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

export interface CertInfo {
  /** The PEM file(s) uWS loads: one file holding key and chain (ACME), or two (--tls-cert/--tls-key). */
  certPath: string
  keyPath: string
  notBeforeMs: number
  notAfterMs: number
  serial: string
  /** DNS names of the subjectAltName extension. */
  names: string[]
}

export class TlsFileError extends Error {
  readonly code = 'VVM_TLS_FILE'
}

const CERT_BLOCK_RE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/
const KEY_BLOCK_RE = /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]+?-----END [A-Z ]*PRIVATE KEY-----/

/**
 * Parses the first certificate of `certPem` and checks that `keyPem` is its private key.
 * Throws a TlsFileError naming `where` otherwise.
 */
export function certInfoOf(certPem: string, keyPem: string, certPath: string, keyPath: string, where: string): CertInfo {
  const certBlock = CERT_BLOCK_RE.exec(certPem)?.[0]
  const keyBlock = KEY_BLOCK_RE.exec(keyPem)?.[0]
  if (certBlock === undefined) throw new TlsFileError(`${where}: no PEM certificate found`)
  if (keyBlock === undefined) throw new TlsFileError(`${where}: no PEM private key found`)
  let x509: X509Certificate
  try {
    x509 = new X509Certificate(certBlock)
  } catch (err) {
    throw new TlsFileError(`${where}: the certificate cannot be parsed: ${(err as Error).message}`)
  }
  let matches: boolean
  try {
    matches = x509.checkPrivateKey(createPrivateKey(keyBlock))
  } catch (err) {
    throw new TlsFileError(`${where}: the private key cannot be parsed: ${(err as Error).message}`)
  }
  if (!matches) throw new TlsFileError(`${where}: the private key does not belong to the certificate`)
  const names = (x509.subjectAltName ?? '').split(',').map((s) => s.trim()).filter((s) => s.startsWith('DNS:')).map((s) => s.slice(4).toLowerCase())
  return { certPath, keyPath, notBeforeMs: Date.parse(x509.validFrom), notAfterMs: Date.parse(x509.validTo), serial: x509.serialNumber, names }
}

/** Reads `--tls-cert`/`--tls-key` (checked at start: readable, parseable, a matching pair). */
export function readStaticCert(certPath: string, keyPath: string): { info: CertInfo; keyModeLoose: boolean } {
  const read = (path: string, option: string): string => {
    try {
      return readFileSync(path, 'utf8')
    } catch (err) {
      throw new TlsFileError(`${option} ${path}: cannot read: ${(err as Error).message}`)
    }
  }
  const info = certInfoOf(read(certPath, '--tls-cert'), read(keyPath, '--tls-key'), certPath, keyPath, `--tls-cert ${certPath} / --tls-key ${keyPath}`)
  return { info, keyModeLoose: (statSync(keyPath).mode & 0o077) !== 0 }
}

export class CertStore {
  private constructor(readonly dir: string) {}

  /** Creates <dataDir>/acme with mode 0700 (and narrows an existing one to it). */
  static open(dataDir: string): CertStore {
    const dir = join(dataDir, 'acme')
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    chmodSync(dir, 0o700)
    return new CertStore(dir)
  }

  pathOf(domain: string): string {
    return join(this.dir, `${domain}.pem`)
  }

  /** The account key, created by `create` on first use. */
  async accountKey(create: () => Promise<string>): Promise<string> {
    const path = join(this.dir, 'account-key.pem')
    if (existsSync(path)) {
      chmodSync(path, 0o600)
      return readFileSync(path, 'utf8')
    }
    const pem = await create()
    this.writeAtomically(path, pem)
    return pem
  }

  /**
   * The stored certificate of `domain`, if there is one that names it; a file that cannot be
   * used is reported through `onBad` and treated as absent (a new one is ordered).
   */
  load(domain: string, onBad: (err: Error) => void): CertInfo | undefined {
    const path = this.pathOf(domain)
    if (!existsSync(path)) return undefined
    try {
      chmodSync(path, 0o600)
      const pem = readFileSync(path, 'utf8')
      const info = certInfoOf(pem, pem, path, path, path)
      if (!info.names.includes(domain)) throw new TlsFileError(`${path}: the certificate does not name ${domain} (it names ${info.names.join(', ')})`)
      return info
    } catch (err) {
      onBad(err as Error)
      return undefined
    }
  }

  /** Stores a new key and chain for `domain` and returns what was stored. */
  save(domain: string, keyPem: string, chainPem: string): CertInfo {
    const path = this.pathOf(domain)
    const pem = `${keyPem.trim()}\n${chainPem.trim()}\n`
    const info = certInfoOf(pem, pem, path, path, `the certificate issued for ${domain}`)
    this.writeAtomically(path, pem)
    return info
  }

  private writeAtomically(path: string, text: string): void {
    const tmp = `${path}.${process.pid}.tmp`
    writeFileSync(tmp, text, { mode: 0o600 })
    renameSync(tmp, path)
  }
}
