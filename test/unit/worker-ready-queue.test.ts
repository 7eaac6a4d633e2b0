// The worker's turn order: accounts with work take turns one at a time, a busy account is never
// handed out twice, and the periodic sweep neither starves nor is starved by signalled accounts.
import { describe, expect, it } from 'vitest';
import { ReadyQueue, WORK } from '../../src/worker/ready-queue.ts';

describe('ReadyQueue', () => {
  it('takes accounts in turn; one with more waiting goes to the back of the line', () => {
    const q = new ReadyQueue();
    q.add('backlog', WORK.read, true);
    expect(q.take()).toEqual({ account: 'backlog', work: WORK.read });
    q.add('quiet', WORK.read, true);
    q.done('backlog', WORK.read);
    expect(q.take()?.account).toBe('quiet');
    q.done('quiet', 0);
    expect(q.take()?.account).toBe('backlog');
    q.done('backlog', 0);
    expect(q.take()).toBeUndefined();
  });

  it('never hands out a busy account; what it is given meanwhile waits for the end of its turn', () => {
    const q = new ReadyQueue();
    q.add('a', WORK.read, false);
    expect(q.take()).toEqual({ account: 'a', work: WORK.read });
    q.add('a', WORK.retries, true);
    q.add('a', WORK.claim, false);
    expect(q.take()).toBeUndefined();
    expect(q.running).toBe(1);
    q.done('a', 0);
    expect(q.take()).toEqual({ account: 'a', work: WORK.retries | WORK.claim });
  });

  it('merges what an account is asked for while it waits, and keeps its place', () => {
    const q = new ReadyQueue();
    q.add('a', WORK.read, false);
    q.add('b', WORK.read, false);
    q.add('a', WORK.claim, false);
    expect(q.size).toBe(2);
    expect(q.take()).toEqual({ account: 'a', work: WORK.read | WORK.claim });
  });

  it('a signal moves a swept account to the urgent line; the two lines take turns', () => {
    const q = new ReadyQueue();
    for (const account of ['s1', 's2', 's3']) q.add(account, WORK.read, false);
    q.add('s3', WORK.read, true);
    q.add('u1', WORK.read, true);
    const order = [];
    for (let turn = q.take(); turn; turn = q.take()) order.push(turn.account);
    expect(order).toEqual(['s3', 's1', 'u1', 's2']);
  });
});
