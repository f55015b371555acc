package local

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Metric names of the I/O sidecar that progress reports.
const (
	metricRecordsIn     = "millrace_records_in_total"
	metricRecordsOut    = "millrace_records_out_total"
	metricDeadLettered  = "millrace_records_dead_lettered_total"
	metricsScrapeTimout = 2 * time.Second
)

// counters are an I/O sidecar's record counters summed over every incarnation of the process:
// a restarted process starts its counters from zero.
type counters struct {
	mu           sync.Mutex
	base, last   map[string]float64
	lastRestarts int
}

func (c *counters) observe(now map[string]float64, restarts int) map[string]float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.base == nil {
		c.base, c.last = map[string]float64{}, map[string]float64{}
	}
	reset := restarts != c.lastRestarts
	for k, v := range now {
		if v < c.last[k] {
			reset = true
		}
	}
	if reset {
		for k, v := range c.last {
			c.base[k] += v
		}
		c.last = map[string]float64{}
	}
	c.lastRestarts = restarts
	for k, v := range now {
		c.last[k] = v
	}
	return c.totalLocked()
}

func (c *counters) total() map[string]float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.totalLocked()
}

func (c *counters) totalLocked() map[string]float64 {
	out := map[string]float64{}
	for k, v := range c.base {
		out[k] += v
	}
	for k, v := range c.last {
		out[k] += v
	}
	return out
}

var httpClient = &http.Client{Timeout: metricsScrapeTimout}

// scrape reads the sums of the record counters from a /metrics page in the Prometheus text
// format (all label sets of a metric added up).
func scrape(ctx context.Context, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		for _, name := range []string{metricRecordsIn, metricRecordsOut, metricDeadLettered} {
			if rest, ok := strings.CutPrefix(line, name); ok && (rest == "" || rest[0] == '{' || rest[0] == ' ') {
				fields := strings.Fields(rest[strings.LastIndex(rest, "}")+1:])
				if len(fields) == 0 {
					continue
				}
				if v, err := strconv.ParseFloat(fields[0], 64); err == nil {
					out[name] += v
				}
			}
		}
	}
	return out, sc.Err()
}

// freePort returns a loopback port that is free now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
