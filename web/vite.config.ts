import { resolve } from "node:path";
import { defineConfig } from "vite";

// Two pages, one bundle each; the server serves whatever lands in the output
// folder (CMake passes --outDir: build/app/web, beside the binary).
export default defineConfig({
  base: "/",
  build: {
    target: "es2020",
    // The pages must work with nothing but the server: no CDN, no inline
    // data: URLs that the Content-Security-Policy would have to allow.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    rollupOptions: {
      input: {
        buyer: resolve(__dirname, "index.html"),
        operator: resolve(__dirname, "operator.html"),
      },
    },
  },
});
