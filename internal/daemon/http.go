package daemon

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Limits of the HTTP listener. It faces mail clients and the internet, so a
// slow or idle client cannot hold a connection or a handler for long.
const (
	httpReadHeaderTimeout = 5 * time.Second
	httpReadTimeout       = 10 * time.Second
	httpRequestTimeout    = 10 * time.Second // a handler's store calls
	httpWriteTimeout      = httpRequestTimeout + 5*time.Second
	httpIdleTimeout       = 60 * time.Second
	httpMaxHeaderBytes    = 16 << 10
)

// webServer is an HTTP listener of consentd: one-click unsubscribe links
// (--http) or metrics (--metrics-listen). It is started and stopped with
// consentd, and every one of its handlers has returned before the store
// closes.
type webServer struct {
	srv    *http.Server
	lis    net.Listener
	cancel context.CancelFunc // cancels in-flight requests on a forced stop

	mu      sync.RWMutex // held for reading by every running handler
	stopped bool
}

// startWeb listens on addr, to serve h.
func startWeb(addr string, h http.Handler, log *slog.Logger) (*webServer, net.Addr, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	base, cancel := context.WithCancel(context.Background())
	w := &webServer{lis: lis, cancel: cancel}
	w.srv = &http.Server{
		Handler:           w.gate(h),
		ReadHeaderTimeout: httpReadHeaderTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       httpIdleTimeout,
		MaxHeaderBytes:    httpMaxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return base },
		// net/http's own complaints (bad TLS, panics) name peers, never URLs.
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return w, lis.Addr(), nil
}

func (w *webServer) serve() error { return w.srv.Serve(w.lis) }

// gate runs h with a deadline, and keeps count of running handlers so stop
// can wait for them; after stop, requests get 503 without reaching h.
func (w *webServer) gate(h http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.mu.RLock()
		defer w.mu.RUnlock()
		if w.stopped {
			http.Error(rw, "consentd is shutting down", http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), httpRequestTimeout)
		defer cancel()
		h.ServeHTTP(rw, r.WithContext(ctx))
	})
}

// shutdown stops accepting and lets in-flight requests finish until ctx is
// done, then cancels them. It returns once every handler has returned.
func (w *webServer) shutdown(ctx context.Context) {
	if err := w.srv.Shutdown(ctx); err != nil {
		w.cancel()
		w.srv.Close()
	}
	w.stop()
}

// close stops at once, for the paths that end consentd on an error.
func (w *webServer) close() {
	w.cancel()
	w.srv.Close()
	w.stop()
}

// stop waits for running handlers and turns later ones away: net/http's
// Close does not wait for handlers, and they use the store.
func (w *webServer) stop() {
	w.mu.Lock()
	w.stopped = true
	w.mu.Unlock()
	w.cancel()
}
