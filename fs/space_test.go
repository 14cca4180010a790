package fs

import (
	"errors"
	"testing"
	"time"
)

// TestSpaceUsedNeverWaits: while one statfs measures, another gets the
// last figure at once; a figure is kept two seconds; a failed measure
// keeps the last one.
func TestSpaceUsedNeverWaits(t *testing.T) {
	var s spaceUsed
	if got := s.get(func() (int64, error) { return 100, nil }); got != 100 {
		t.Fatalf("first figure %d", got)
	}
	if got := s.get(func() (int64, error) { t.Error("measured again within two seconds"); return 0, nil }); got != 100 {
		t.Errorf("cached figure %d", got)
	}
	s.at = time.Now().Add(-3 * time.Second)
	measuring, release := make(chan struct{}), make(chan struct{})
	done := make(chan int64)
	go func() {
		done <- s.get(func() (int64, error) { close(measuring); <-release; return 200, nil })
	}()
	<-measuring
	got := make(chan int64)
	go func() { got <- s.get(func() (int64, error) { t.Error("two measures at once"); return 0, nil }) }()
	select {
	case v := <-got:
		if v != 100 {
			t.Errorf("while measuring: %d, want the last figure 100", v)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a statfs waited for another's measure")
	}
	close(release)
	if v := <-done; v != 200 {
		t.Errorf("new figure %d", v)
	}
	s.at = time.Now().Add(-3 * time.Second)
	if v := s.get(func() (int64, error) { return 0, errors.New("gone") }); v != 200 {
		t.Errorf("after a failed measure: %d, want 200", v)
	}
}
