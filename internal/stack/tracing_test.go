package stack

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/altegio-integrator/integrator/internal/tracing"
)

func TestSetupTracing(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		opts    []tracing.Option
		log     string // in the log, "" for nothing
		err     string
		records bool
	}{
		{name: "off"},
		{name: "otlp", env: map[string]string{tracing.EnvEndpoint: "http://bob:s3cret@127.0.0.1:1"},
			log: "exporting over OTLP/HTTP", records: true},
		{name: "recorder only", opts: []tracing.Option{tracing.WithRecorder(tracing.NewRecorder(4))},
			log: "kept in memory only", records: true},
		{name: "bad protocol", env: map[string]string{tracing.EnvEndpoint: "http://127.0.0.1:1", tracing.EnvProtocol: "grpc"},
			err: "OTEL_EXPORTER_OTLP_PROTOCOL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, nil))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			tp, stop, err := SetupTracing(ctx, "altegio-test", func(k string) string { return tt.env[k] }, log, tt.opts...)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one naming %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			_, span := tp.Tracer("t").Start(context.Background(), "s")
			if span.IsRecording() != tt.records {
				t.Errorf("recording %v, want %v", span.IsRecording(), tt.records)
			}
			if tt.env[tracing.EnvEndpoint] == "" {
				span.End() // not ended, a span is not exported: stop does not wait for port 1
			}
			cancel() // the binary's context has ended when stop runs
			stop()
			out := buf.String()
			if tt.log == "" && strings.Contains(out, "tracing on") || tt.log != "" && !strings.Contains(out, tt.log) {
				t.Errorf("log %q, want %q", out, tt.log)
			}
			if strings.Contains(out, "s3cret") {
				t.Errorf("log shows the endpoint's password: %s", out)
			}
		})
	}
}
