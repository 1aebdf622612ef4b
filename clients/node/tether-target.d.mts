// Types for tether-target.mjs (TypeScript finds this file next to the .mjs it describes).

export declare const STATE_FORMAT: number;
export declare const PRODUCTION_GUARD: string;
export declare const ENV_RECHECK_MS: number;
export declare const APPLICATION_PREFIX: string;

export type Target = 'local' | 'production';

export type TetherTargetErrorName =
  | 'TargetError'
  | 'ProjectRootNotFound'
  | 'StateUnreadable'
  | 'StateFormatTooNew'
  | 'ProductionRefused'
  | 'DatabaseUrlMissing';

export declare class TetherTargetError extends Error {
  constructor(name: TetherTargetErrorName, message: string);
  name: TetherTargetErrorName;
}

/** What .runtime/db-target.json holds; `format` 0 is a file written before the field existed. */
export interface TargetState {
  format: number;
  target: Target;
  user: string | null;
  when: string | null;
  guard: string | null;
}

export interface ActiveDatabase {
  /** The target this process uses. */
  target: Target;
  url: string;
  /** What tether wrote (its target differs from `target` when the process is held back). */
  state: TargetState;
  /** Why a test process stays on local although the state says production. */
  heldBack: string | null;
}

export type Environment = Record<string, string | undefined>;

export declare function parseDotenv(text: string): Record<string, string>;
export declare function parseState(text: string, path?: string): TargetState;
export declare function isTestProcess(env?: Environment): boolean;
export declare function decideTarget(
  state: TargetState, env?: Environment, statePath?: string,
): { target: Target; heldBack: string | null };
export declare function findRoot(options?: { env?: Environment; cwd?: string }): string;

export declare class TargetReader {
  constructor(options?: { root?: string; env?: Environment; cwd?: string });
  readonly root: string;
  readonly statePath: string;
  readonly envPath: string;
  resolve(): ActiveDatabase;
  databaseUrl(): string;
  activeTarget(): Target;
}

export declare function defaultReader(): TargetReader;
/** The URL of the database this process should use now. */
export declare function databaseUrl(): string;
/** The target this process uses now. */
export declare function activeTarget(): Target;
export declare function applicationName(pid?: number): string;
export declare function withApplicationName(url: string, name?: string): string;

export interface Follower<T> {
  current(): T;
  close(closer?: (resource: T) => unknown): Promise<unknown>;
}

export declare function followTarget<T>(options: {
  create: (url: string) => T;
  retire: (resource: T) => unknown;
  reader?: TargetReader;
}): Follower<T>;

/** The parts of node-postgres's Pool that pgPool uses. */
export interface PgPoolLike {
  query(...args: any[]): any;
  connect(...args: any[]): any;
  end(): Promise<void>;
  readonly waitingCount: number;
}

export interface TargetPgPool<P extends PgPoolLike> {
  pool(): P;
  query: P['query'];
  connect: P['connect'];
  end(): Promise<unknown>;
}

export declare function pgPool<P extends PgPoolLike, O extends object>(
  Pool: new (options: O & { connectionString: string }) => P,
  options?: Partial<O> & { reader?: TargetReader },
): TargetPgPool<P>;

export interface PrismaClientLike {
  $disconnect(): Promise<void>;
}

export declare function getPrismaClient<C extends PrismaClientLike>(
  PrismaClient: new (options?: any) => C,
  options?: { graceMs?: number; create?: (url: string) => C; reader?: TargetReader } & Record<string, unknown>,
): C;

export declare function disconnectPrisma(PrismaClient: abstract new (...args: any[]) => PrismaClientLike): Promise<void>;
