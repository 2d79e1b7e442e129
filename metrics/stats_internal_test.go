package metrics

import (
	"reflect"
	"testing"

	"github.com/lightdht/lightdht/krpc"
)

// TestMetricsAddStats: addStats adds every field of krpc.Stats, so a
// counter added to the transport later is summed too (or the test says
// it is not a uint64).
func TestMetricsAddStats(t *testing.T) {
	var a krpc.Stats
	v := reflect.ValueOf(&a).Elem()
	for i := range v.NumField() {
		if v.Field(i).Kind() != reflect.Uint64 {
			t.Fatalf("krpc.Stats.%s is a %v: addStats sums only uint64 fields", v.Type().Field(i).Name, v.Field(i).Kind())
		}
		v.Field(i).SetUint(uint64(i + 1))
	}
	sum := reflect.ValueOf(addStats(a, a))
	for i := range sum.NumField() {
		if got := sum.Field(i).Uint(); got != 2*uint64(i+1) {
			t.Errorf("%s: %d + %d = %d", sum.Type().Field(i).Name, i+1, i+1, got)
		}
	}
}
