// The dashboard's build: Vite bundles the ES modules (Preact + htm, uPlot) into hashed files
// under the Python package's dashboard_dist/, which the fleet server serves at /ui/.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/ui/',
  build: {
    outDir: fileURLToPath(new URL('../lekiwi_fleet_server/dashboard_dist', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
  },
});
