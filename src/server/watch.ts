import { realpathSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';

export interface FileWatch {
  close(): void;
}

/**
 * Calls `onChange` (debounced) when any of `files` changes. Watches directories, not files:
 * Kubernetes swaps mounted ConfigMaps and Secrets by replacing a `..data` symlink, which a watch
 * on the file itself never sees; an editor's rename-over-the-file is missed the same way. A file
 * that is a symlink elsewhere also gets its target's directory watched.
 */
export function watchFiles(
  files: readonly string[],
  opts: { debounceMs: number; onChange: () => void; onError: (dir: string, error: unknown) => void },
): FileWatch {
  const dirs = new Map<string, Set<string>>();
  const add = (file: string): void => {
    const names = dirs.get(dirname(file)) ?? new Set<string>();
    dirs.set(dirname(file), names.add(basename(file)));
  };
  for (const file of files) {
    add(file);
    const real = realTarget(file);
    // The timestamped `..2026_…` directory of a Kubernetes volume is replaced whole: the `..data` event covers it.
    if (real !== undefined && real !== file && !basename(dirname(real)).startsWith('..')) add(real);
  }

  let timer: NodeJS.Timeout | undefined;
  const changed = (): void => {
    clearTimeout(timer);
    timer = setTimeout(opts.onChange, opts.debounceMs);
  };
  const watchers: FSWatcher[] = [];
  for (const [dir, names] of dirs) {
    try {
      const watcher = watch(dir, { persistent: false }, (_event, name) => {
        // `..data`, `..data_tmp`, `..2026_…`: the Kubernetes atomic-writer's swap.
        if (name === null || names.has(name) || name.startsWith('..')) changed();
      });
      watcher.on('error', (error) => opts.onError(dir, error));
      watchers.push(watcher);
    } catch (error) {
      opts.onError(dir, error);
    }
  }
  return {
    close() {
      clearTimeout(timer);
      for (const watcher of watchers) watcher.close();
    },
  };
}

function realTarget(file: string): string | undefined {
  try {
    return realpathSync(file);
  } catch {
    return undefined;
  }
}
