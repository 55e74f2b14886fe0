package gateway

import (
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Endpoint labels of the metrics.
const (
	endpointChat       = "chat_completions"
	endpointEmbeddings = "embeddings"
	endpointModels     = "models"
)

// metrics are the gateway's Prometheus metrics, all named
// aibatch_gateway_*.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	waiting  *prometheus.GaugeVec
	parked   *prometheus.CounterVec
	results  prometheus.CounterFunc
}

// newMetrics registers the metrics on reg. unclaimed reads the results
// that arrived with nobody waiting.
func newMetrics(reg prometheus.Registerer, unclaimed func() float64) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aibatch_gateway_requests_total",
			Help: "HTTP requests answered, by endpoint and status code.",
		}, []string{"endpoint", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "aibatch_gateway_request_duration_seconds",
			Help: "Time from an HTTP request's arrival to its answer, by endpoint and status code.",
			// From a urgent request's milliseconds to a batch's MAX_WAIT.
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}, []string{"endpoint", "status"}),
		waiting: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "aibatch_gateway_waiting_requests",
			Help: "HTTP requests waiting for their results now, by endpoint.",
		}, []string{"endpoint"}),
		parked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "aibatch_gateway_parked_total",
			Help: "Waits handed off from the HTTP server after ParkAfter (1s), by endpoint: their connections are answered and closed by the gateway.",
		}, []string{"endpoint"}),
		results: prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "aibatch_gateway_unclaimed_results_total",
			Help: "Results that arrived with nobody waiting for them: after a timeout or a disconnect, or a second copy.",
		}, unclaimed),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.waiting, m.parked, m.results} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register gateway metrics: %w", err)
		}
	}
	for _, e := range []string{endpointChat, endpointEmbeddings} {
		m.waiting.WithLabelValues(e)
		m.parked.WithLabelValues(e)
	}
	return m, nil
}

// observe records one answered request.
func (m *metrics) observe(endpoint string, status int, d time.Duration) {
	s := strconv.Itoa(status)
	m.requests.WithLabelValues(endpoint, s).Inc()
	m.duration.WithLabelValues(endpoint, s).Observe(d.Seconds())
}
