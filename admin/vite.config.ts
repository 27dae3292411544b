// Builds the admin page (admin/) into dist/admin/, which the server reads at start and serves
// at /admin (src/main/admin.ts). Everything is bundled: the page loads nothing from elsewhere.
import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vite'

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/admin/',
  publicDir: false,
  build: {
    outDir: fileURLToPath(new URL('../dist/admin', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    // The server sends a CSP with script-src 'self': no inline scripts, no module preload polyfill.
    modulePreload: false,
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 200,
  },
})
