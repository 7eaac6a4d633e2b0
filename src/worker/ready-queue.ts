// Which accounts have work waiting, in turn order. An account is in the queue at most once, with
// what it wants done (read new entries, claim due retries, claim orphans); it leaves the queue for
// the length of its turn and comes back at the end of the line if more is waiting, so accounts
// with work take turns one batch each and a backlog of 50,000 holds up nobody else's new mail.
// Two lines: `urgent` (signalled, more waiting after a full batch, a retry due) and `routine` (the
// periodic sweep of every account); when both hold accounts they take turns, so a sweep of 10,000
// idle accounts neither waits behind a busy one nor delays it by more than one turn in two.
export const WORK = { read: 1, retries: 2, claim: 4 } as const;
/** A set of WORK bits. */
export type Work = number;

export interface Turn { account: string; work: Work }

export class ReadyQueue {
  /** What each queued or busy account wants done next. */
  private readonly wants = new Map<string, Work>();
  private readonly urgent = new Set<string>();
  private readonly routine = new Set<string>();
  /** Accounts in a turn right now; what they are given meanwhile waits for the turn's end. */
  private readonly busy = new Set<string>();
  /** Busy accounts given urgent work during their turn. */
  private readonly urgentLater = new Set<string>();
  private routineNext = false;

  get size(): number { return this.urgent.size + this.routine.size; }

  get running(): number { return this.busy.size; }

  add(account: string, work: Work, urgent: boolean): void {
    if (work === 0) return;
    this.wants.set(account, (this.wants.get(account) ?? 0) | work);
    if (this.busy.has(account)) {
      if (urgent) this.urgentLater.add(account);
      return;
    }
    if (urgent) {
      this.routine.delete(account);
      this.urgent.add(account);
    } else if (!this.urgent.has(account)) {
      this.routine.add(account);
    }
  }

  /** The next account's turn (it is busy until `done`), or undefined when nothing waits. */
  take(): Turn | undefined {
    const fromRoutine = this.routine.size > 0 && (this.urgent.size === 0 || this.routineNext);
    const line = fromRoutine ? this.routine : this.urgent;
    const account = first(line);
    if (account === undefined) return undefined;
    if (this.urgent.size > 0 && this.routine.size > 0) this.routineNext = !fromRoutine;
    line.delete(account);
    const work = this.wants.get(account) ?? 0;
    this.wants.delete(account);
    this.busy.add(account);
    return { account, work };
  }

  /** Ends the account's turn; `more` is what it still wants (a full batch: more may be waiting). */
  done(account: string, more: Work): void {
    this.busy.delete(account);
    const urgent = this.urgentLater.delete(account) || more !== 0;
    const work = (this.wants.get(account) ?? 0) | more;
    this.wants.delete(account);
    this.add(account, work, urgent);
  }
}

function first(set: Set<string>): string | undefined {
  for (const value of set) return value;
  return undefined;
}
