/**
 * better-sqlite3's Database and Statement objects are native `node::ObjectWrap`s. From Node 24
 * an ObjectWrap's destructor removes an environment cleanup hook, and when the garbage collector
 * runs that destructor there is no current environment, so Node aborts the process:
 * `Assertion failed: (env) != nullptr` in `RemoveEnvironmentCleanupHook`, called from
 * `Statement::~Statement`. Measured here: `npm start` on Node 24.21 aborted in 5 of 10 starts
 * with better-sqlite3 12.6.2 and in 7 of 10 with 12.11.1, each time after `db.pragma()` had
 * prepared a statement and dropped it; Node 20 never runs that code.
 *
 * So no such object is ever left to the collector: every database and every statement is held
 * here until the process exits, when Node's own cleanup hooks free them in order. Statements are
 * prepared once per database (a few dozen objects per open), and `db.pragma()`, which prepares a
 * statement per call, is not used: `db.exec()` makes no statement object.
 */
const held: object[] = [];

export function holdUntilExit<T extends object>(native: T): T {
  held.push(native);
  return native;
}
