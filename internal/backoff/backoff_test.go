package backoff

import (
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want time.Duration // before jitter
	}{
		{0, time.Second}, {1, time.Second}, {2, 2 * time.Second}, {5, 16 * time.Second}, {6, 30 * time.Second}, {100, 30 * time.Second},
	} {
		for range 100 {
			if got := Delay(time.Second, 30*time.Second, tc.n); got < tc.want/2 || got > tc.want {
				t.Fatalf("Delay(1s, 30s, %d) = %v, want within [%v, %v]", tc.n, got, tc.want/2, tc.want)
			}
		}
	}
	if got := Delay(0, time.Second, 3); got != 0 {
		t.Errorf("Delay with no base = %v, want 0", got)
	}
}
