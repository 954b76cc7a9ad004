import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { expect } from 'chai';
import { has, nextPhone, marker, startRig, type SmsRig } from './helpers.js';

/** The inode of this process's TCP socket from localPort to remotePort (IPv4, /proc/net/tcp). */
function socketInode(localPort: number, remotePort: number): string | null {
  const hex = (p: number) => p.toString(16).toUpperCase().padStart(4, '0');
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    if (f[1]!.endsWith(`:${hex(localPort)}`) && f[2]!.endsWith(`:${hex(remotePort)}`)) return f[9]!;
  }
  return null;
}

/** This process's descriptor for a socket inode. */
function fdOf(inode: string): number | null {
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === `socket:[${inode}]`) return Number(fd);
    } catch {
      // closed meanwhile
    }
  }
  return null;
}

/** TCP_NODELAY as the kernel holds it for descriptor `fd`, read by a child that inherits the socket as its fd 3. */
function kernelNoDelay(fd: number): Promise<number> {
  const py = 'import socket; s = socket.socket(fileno=3); print(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)); s.detach()';
  return new Promise((resolve, reject) => {
    const child = spawn('python3', ['-c', py], { stdio: ['ignore', 'pipe', 'pipe', fd] });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => {
      if (child.pid && child.exitCode === null) process.kill(child.pid, 'SIGKILL');
    }, 10_000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(Number(out.trim()));
      else reject(new Error(`getsockopt failed (${code}): ${out}`));
    });
  });
}

describe('sms over TCP: Nagle off, answer before receipt', function () {
  this.timeout(60_000);
  let rig: SmsRig;
  before(async () => {
    rig = await startRig();
  });
  after(async () => {
    await rig?.stop();
  });

  it('the bind the gateway opens has TCP_NODELAY set (so no PDU waits for a delayed ACK)', async () => {
    const smscSide = rig.smsc.server.sessions.find((s) => !s.socket.destroyed)!;
    const gatewayPort = smscSide.socket.remotePort!;
    const inode = socketInode(gatewayPort, rig.smsc.port);
    expect(inode, 'the gateway end of the SMPP connection in /proc/net/tcp').to.be.a('string');
    const fd = fdOf(inode!);
    expect(fd, 'a descriptor of this process for it').to.be.a('number');
    expect(await kernelNoDelay(fd!)).to.equal(1);
  });

  it('the test SMSC end has TCP_NODELAY too, as the benchmarks assume', async () => {
    const smscSide = rig.smsc.server.sessions.find((s) => !s.socket.destroyed)!;
    const inode = socketInode(rig.smsc.port, smscSide.socket.remotePort!);
    const fd = fdOf(inode!);
    expect(fd).to.be.a('number');
    expect(await kernelNoDelay(fd!)).to.equal(1);
  });

  it("writes deliver_sm_resp before the receipt's submit_sm", async () => {
    const sender = nextPhone();
    const m = marker('order');
    const from = rig.smsc.arrivals.length;
    expect(await rig.smsc.deliverText(`路灯不亮 ${m}`, { from: sender })).to.equal(0);
    await rig.gw.created.waitFor(has(m));
    await rig.smsc.waitUntil(() => rig.smsc.submits.some((s) => s.destination.endsWith(sender)), 10_000, 'the receipt');
    const seen = rig.smsc.arrivals.slice(from).map((a) => a.command);
    const resp = seen.indexOf('deliver_sm_resp');
    const submit = seen.indexOf('submit_sm');
    expect(resp, `arrival order: ${seen.join(', ')}`).to.be.at.least(0);
    expect(submit, `arrival order: ${seen.join(', ')}`).to.be.greaterThan(resp);
  });
});

describe('sms over TCP: SMS_TCP_NODELAY=false for an SMSC that keeps Nagle on', function () {
  this.timeout(60_000);
  let rig: SmsRig;
  before(async () => {
    rig = await startRig({ SMS_TCP_NODELAY: 'false' });
  });
  after(async () => {
    await rig?.stop();
  });

  it('leaves Nagle on for the bind, and messages still become tickets', async () => {
    const smscSide = rig.smsc.server.sessions.find((s) => !s.socket.destroyed)!;
    const fd = fdOf(socketInode(smscSide.socket.remotePort!, rig.smsc.port)!);
    expect(await kernelNoDelay(fd!)).to.equal(0);
    const m = marker('nagle');
    expect(await rig.smsc.deliverText(`井盖丢失 ${m}`, { from: nextPhone() })).to.equal(0);
    await rig.gw.created.waitFor(has(m));
  });
});
