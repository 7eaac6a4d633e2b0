// The entries this worker holds, per account: read ahead, being delivered, or delivered with the
// outcome not yet recorded. Two accounts' streams can hold the same entry id, so an id alone names
// nothing. Held entries are never taken for orphans by this worker, and are kept from looking
// orphaned to the others (keep-alive.ts). Holds are counted: the read loop and the deliverer may
// both hold an entry, and it stays held until both let go.
export class InHand {
  private readonly byAccount = new Map<string, Map<string, number>>();

  add(account: string, ids: readonly string[]): void {
    let held = this.byAccount.get(account);
    if (!held) this.byAccount.set(account, (held = new Map()));
    for (const id of ids) held.set(id, (held.get(id) ?? 0) + 1);
  }

  delete(account: string, ids: readonly string[]): void {
    const held = this.byAccount.get(account);
    if (!held) return;
    for (const id of ids) {
      const count = held.get(id) ?? 0;
      if (count <= 1) held.delete(id); else held.set(id, count - 1);
    }
    if (held.size === 0) this.byAccount.delete(account);
  }

  has(account: string, id: string): boolean {
    return this.byAccount.get(account)?.has(id) ?? false;
  }

  ids(account: string): string[] {
    return [...(this.byAccount.get(account)?.keys() ?? [])];
  }
}
