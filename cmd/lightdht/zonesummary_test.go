package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestZoneSummary: a zone crawl's summary gives the estimate of the
// answering nodes first, then that of every contact listed, each with its
// 95% interval.
func TestZoneSummary(t *testing.T) {
	var b bytes.Buffer
	printSummary(&b, crawlSummary{SizeEstimate: 1_036_288, SizeLow: 1_003_000, SizeHigh: 1_070_000, ZoneAnswering: 1797,
		AnsweringEstimate: 460_032, AnsweringLow: 439_288, AnsweringHigh: 481_756})
	for _, want := range []string{
		"size estimate:  460032 nodes answering (95%: 439288 to 481756, from 1797 answering in the zone)\n",
		"                1036288 nodes listed, answering or not (95%: 1003000 to 1070000)\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
}
