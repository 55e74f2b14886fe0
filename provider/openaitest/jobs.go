package openaitest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aibatch/aibatch/provider/internal/fake"
)

// Paths of the Files and Batch APIs the fake serves.
const (
	// FilesPath takes uploads (POST, multipart "file" and "purpose"); a
	// file's content is at FilesPath + "/{id}/content".
	FilesPath = "/v1/files"
	// BatchesPath creates batches (POST); a batch is at BatchesPath +
	// "/{id}" and is cancelled with POST BatchesPath + "/{id}/cancel".
	BatchesPath = "/v1/batches"
)

// JobEndpoint is the only batch endpoint the fake runs.
const JobEndpoint = "/v1/chat/completions"

// Batch statuses, as the Batch API names them. A job is created
// "validating", is "in_progress" from its first GET (or "failed" when its
// input file was not valid), and ends "completed" (CompleteJobs,
// WithCompleteAfter), "expired" (ExpireJob), "failed" (FailJob) or, after a
// cancel call, "cancelling" and then "cancelled" from the next GET on.
const (
	StatusValidating = "validating"
	StatusInProgress = "in_progress"
	StatusFailed     = "failed"
	StatusCompleted  = "completed"
	StatusExpired    = "expired"
	StatusCancelling = "cancelling"
	StatusCancelled  = "cancelled"
)

// WithCompleteAfter makes every job complete (as CompleteJobs does) on the
// polls-th GET of it; polls <= 0 leaves jobs running until CompleteJobs.
func WithCompleteAfter(polls int) Option {
	return func(s *Server) { s.completeAfter = max(polls, 0) }
}

// JobRequest is one line of a job's input file, decoded.
type JobRequest struct {
	// CustomID, Method and URL are the line's fields.
	CustomID string
	Method   string
	URL      string
	// Request is the line's body.
	Request
}

// storedFile is an uploaded or generated file.
type storedFile struct {
	id, filename, purpose string
	created               int64
	data                  []byte
}

// job is one batch and its progress.
type job struct {
	id, inputFileID, endpoint, window, model string
	metadata                                 map[string]string
	status                                   string
	requests                                 []JobRequest
	invalid                                  []wireBatchError // input file problems: the job fails
	outputFileID, errorFileID                string
	completed, failed                        int
	polls                                    int
	created, inProgressAt, finalizingAt      int64
	completedAt, failedAt, expiredAt         int64
	cancellingAt, cancelledAt                int64
}

type wireFile struct {
	ID        string `json:"id"`
	Object    string `json:"object"`
	Bytes     int    `json:"bytes"`
	CreatedAt int64  `json:"created_at"`
	ExpiresAt *int64 `json:"expires_at"`
	Filename  string `json:"filename"`
	Purpose   string `json:"purpose"`
	Status    string `json:"status"`
}

type wireBatch struct {
	ID               string            `json:"id"`
	Object           string            `json:"object"`
	Endpoint         string            `json:"endpoint"`
	Model            string            `json:"model,omitempty"`
	Errors           *wireBatchErrors  `json:"errors"`
	InputFileID      string            `json:"input_file_id"`
	CompletionWindow string            `json:"completion_window"`
	Status           string            `json:"status"`
	OutputFileID     *string           `json:"output_file_id"`
	ErrorFileID      *string           `json:"error_file_id"`
	CreatedAt        int64             `json:"created_at"`
	InProgressAt     *int64            `json:"in_progress_at"`
	ExpiresAt        *int64            `json:"expires_at"`
	FinalizingAt     *int64            `json:"finalizing_at"`
	CompletedAt      *int64            `json:"completed_at"`
	FailedAt         *int64            `json:"failed_at"`
	ExpiredAt        *int64            `json:"expired_at"`
	CancellingAt     *int64            `json:"cancelling_at"`
	CancelledAt      *int64            `json:"cancelled_at"`
	RequestCounts    wireRequestCounts `json:"request_counts"`
	Metadata         map[string]string `json:"metadata"`
}

type wireBatchErrors struct {
	Object string           `json:"object"`
	Data   []wireBatchError `json:"data"`
}

type wireBatchError struct {
	Code    string  `json:"code"`
	Message string  `json:"message"`
	Param   *string `json:"param"`
	Line    *int    `json:"line"`
}

type wireRequestCounts struct {
	Total     int `json:"total"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
}

// wireLine is one line of a job's input file.
type wireLine struct {
	CustomID string          `json:"custom_id"`
	Method   string          `json:"method"`
	URL      string          `json:"url"`
	Body     json.RawMessage `json:"body"`
}

// wireOutputLine is one line of a job's output or error file.
type wireOutputLine struct {
	ID       string        `json:"id"`
	CustomID string        `json:"custom_id"`
	Response *wireResponse `json:"response"`
	Error    *apiError     `json:"error"`
}

type wireResponse struct {
	StatusCode int    `json:"status_code"`
	RequestID  string `json:"request_id"`
	Body       any    `json:"body"`
}

// Jobs returns how many batches the server has created.
func (s *Server) Jobs() int64 { return s.jobsMade.Load() }

// JobIDs returns the ids of the batches the server has created, in no
// particular order (see JobRequests).
func (s *Server) JobIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.jobs))
	for id := range s.jobs {
		ids = append(ids, id)
	}
	return ids
}

// JobLines returns how many lines the input files of every batch created
// held: the requests sent through the Batch API (one per line, or one
// combined call per line with ASYNC_COMBINE).
func (s *Server) JobLines() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, j := range s.jobs {
		n += len(j.requests)
	}
	return n
}

// Cancelled returns how many batches a cancel call moved to cancelling (a
// cancel call for a batch already cancelling or ended does not count).
func (s *Server) Cancelled() int64 { return s.cancelled.Load() }

// JobRequests returns the decoded lines of job id's input file, in file
// order, and nil for an unknown id.
func (s *Server) JobRequests(id string) []JobRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	if j, ok := s.jobs[id]; ok {
		return slices.Clone(j.requests)
	}
	return nil
}

// FailLines makes the job lines whose user message is one of inputs fail
// with HTTP status: the line goes to the job's error file with
// response.status_code status and OpenAI's error JSON as body. status 0
// stops failing them. Plain and batch calls are not affected.
func (s *Server) FailLines(status int, inputs ...string) {
	s.failLines.Set(status, inputs...)
}

// CompleteJobs ends every job that is validating or in progress: a job
// whose input file was not valid fails; every other one completes with a
// line per request (except those OmitInput leaves out): a 200 chat
// completion answering Answer(input) in the output file, or an error
// (RejectInput, FailLines, unknown model) in the error file.
func (s *Server) CompleteJobs() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range s.jobs {
		if j.status == StatusValidating || j.status == StatusInProgress {
			s.completeLocked(j)
		}
	}
}

// ExpireJob ends job id as expired: its first answered requests (in input
// file order) are answered as CompleteJobs would, and every other one gets
// an error-file line with code "batch_expired", as the real API writes for
// requests it never ran. It fails for an unknown id and for a job that is
// not validating or in progress or whose input file was not valid.
func (s *Server) ExpireJob(id string, answered int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[id]
	switch {
	case !ok:
		return fmt.Errorf("openaitest: no job %q", id)
	case j.status != StatusValidating && j.status != StatusInProgress:
		return fmt.Errorf("openaitest: job %q is %s", id, j.status)
	case len(j.invalid) > 0:
		return fmt.Errorf("openaitest: job %q has an invalid input file", id)
	}
	s.finishLocked(j, StatusExpired, answered)
	return nil
}

// FailJob ends job id as failed, as OpenAI fails a batch it cannot run
// (here: its organization's enqueued token limit reached): status
// "failed", errors.data holding one error with code
// "token_limit_exceeded", no output or error file, none of its requests
// answered. It fails for an unknown id and for a job that is not
// validating or in progress.
func (s *Server) FailJob(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[id]
	switch {
	case !ok:
		return fmt.Errorf("openaitest: no job %q", id)
	case j.status != StatusValidating && j.status != StatusInProgress:
		return fmt.Errorf("openaitest: job %q is %s", id, j.status)
	}
	j.invalid = []wireBatchError{tokenLimitExceeded(j.model, 90_000)}
	j.status, j.failedAt = StatusFailed, time.Now().Unix()
	return nil
}

// tokenLimitExceeded is the error of a batch refused because its model's
// enqueued tokens would pass limit, worded as OpenAI words it.
func tokenLimitExceeded(model string, limit int64) wireBatchError {
	return wireBatchError{
		Code: "token_limit_exceeded",
		Message: "Enqueued token limit reached for " + model + " in organization org-fake. Limit: " + thousands(limit) +
			" enqueued tokens. Please try again once some in_progress batches have been completed.",
	}
}

// thousands writes n with thousands separators, as OpenAI's messages do.
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// SetEnqueuedTokenLimit makes the Batch API keep the prompt tokens of each
// model's batches that are validating or in progress to at most tokens, as
// OpenAI limits an organization's enqueued tokens per model (a token per 4
// bytes of each line's messages): a batch that would pass it is created,
// and fails at its first GET with the error code token_limit_exceeded and
// a message naming the limit ("Limit: 90,000 enqueued tokens"), none of its
// requests run. 0 removes the limit.
func (s *Server) SetEnqueuedTokenLimit(tokens int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.enqueuedLimit = int64(max(tokens, 0))
}

// QueueRefused returns how many batches SetEnqueuedTokenLimit made fail.
func (s *Server) QueueRefused() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queueRefused
}

// tokens are the prompt tokens of j's requests, as the enqueued token
// limit counts them.
func (j *job) tokens() int64 {
	var n int64
	for _, r := range j.requests {
		var prompt int
		for _, m := range r.Messages {
			prompt += len(m.Content)
		}
		n += fake.Tokens(prompt)
	}
	return n
}

// enqueuedLocked counts the prompt tokens of model's batches that are
// validating or in progress, and valid. It is called with s.mu held.
func (s *Server) enqueuedLocked(model string) int64 {
	var n int64
	for _, j := range s.jobs {
		if j.model == model && len(j.invalid) == 0 && (j.status == StatusValidating || j.status == StatusInProgress) {
			n += j.tokens()
		}
	}
	return n
}

// DeletedFiles returns the ids of the files deleted with DELETE
// /v1/files/{id}, in the order they were deleted; nil when none was.
func (s *Server) DeletedFiles() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.deleted)
}

// HasFile reports whether file id is stored (uploaded or written by a job,
// and not deleted).
func (s *Server) HasFile(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.files[id]
	return ok
}

// jobCall is apiCall for the Files and Batch APIs, which answer a body too
// large with 413.
func (s *Server) jobCall(h func(w http.ResponseWriter, r *http.Request, body []byte)) http.HandlerFunc {
	return s.apiCall(http.StatusRequestEntityTooLarge, "The request body is too large.", h)
}

var filePurposes = map[string]bool{"assistants": true, "batch": true, "fine-tune": true, "vision": true, "user_data": true, "evals": true}

func (s *Server) serveFileUpload(w http.ResponseWriter, r *http.Request, body []byte) {
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err := r.ParseMultipartForm(fake.MaxBodyBytes); err != nil {
		writeError(w, http.StatusBadRequest, "The request must be multipart/form-data: "+err.Error(), "invalid_request_error", "", "")
		return
	}
	purpose := r.FormValue("purpose")
	switch {
	case purpose == "":
		writeError(w, http.StatusBadRequest, "Missing required parameter: 'purpose'.", "invalid_request_error", "purpose", "missing_required_parameter")
		return
	case !filePurposes[purpose]:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("Invalid value for 'purpose': %q.", purpose), "invalid_request_error", "purpose", "invalid_value")
		return
	}
	f, hdr, err := r.FormFile("file")
	if err != nil {
		writeError(w, http.StatusBadRequest, "Missing required parameter: 'file'.", "invalid_request_error", "file", "missing_required_parameter")
		return
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		writeError(w, http.StatusBadRequest, "We could not read the uploaded file.", "invalid_request_error", "file", "")
		return
	}
	s.mu.Lock()
	sf := s.storeFileLocked(hdr.Filename, purpose, data)
	s.mu.Unlock()
	fake.WriteJSON(w, http.StatusOK, sf.wire())
}

// storeFileLocked keeps data as a new file and returns it.
func (s *Server) storeFileLocked(name, purpose string, data []byte) *storedFile {
	f := &storedFile{id: "file-fake" + strconv.FormatInt(s.seq.Add(1), 10), filename: name, purpose: purpose, created: time.Now().Unix(), data: data}
	s.files[f.id] = f
	return f
}

func (f *storedFile) wire() wireFile {
	return wireFile{ID: f.id, Object: "file", Bytes: len(f.data), CreatedAt: f.created, Filename: f.filename, Purpose: f.purpose, Status: "processed"}
}

func (s *Server) serveFileContent(w http.ResponseWriter, r *http.Request, _ []byte) {
	id := r.PathValue("id")
	s.mu.Lock()
	f, ok := s.files[id]
	s.mu.Unlock()
	malformed := ok && s.ctl.TakeMalformed()
	if !ok {
		writeError(w, http.StatusNotFound, "No such File object: "+id, "invalid_request_error", "id", "")
		return
	}
	data := f.data
	if malformed {
		// Cut in the middle of a line, whatever the cut point.
		data = append(slices.Clone(data[:len(data)/2]), `{"id": "batch_req_cut", "custom_id": `...)
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
}

func (s *Server) serveFileDelete(w http.ResponseWriter, r *http.Request, _ []byte) {
	id := r.PathValue("id")
	s.mu.Lock()
	_, ok := s.files[id]
	if ok {
		delete(s.files, id)
		s.deleted = append(s.deleted, id)
	}
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "No such File object: "+id, "invalid_request_error", "id", "")
		return
	}
	fake.WriteJSON(w, http.StatusOK, map[string]any{"id": id, "object": "file", "deleted": true})
}

func (s *Server) serveBatchCreate(w http.ResponseWriter, _ *http.Request, body []byte) {
	var req struct {
		InputFileID      string            `json:"input_file_id"`
		Endpoint         string            `json:"endpoint"`
		CompletionWindow string            `json:"completion_window"`
		Metadata         map[string]string `json:"metadata"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "We could not parse the JSON body of your request.", "invalid_request_error", "", "")
		return
	}
	switch {
	case req.InputFileID == "":
		writeError(w, http.StatusBadRequest, "Missing required parameter: 'input_file_id'.", "invalid_request_error", "input_file_id", "missing_required_parameter")
		return
	case req.Endpoint != JobEndpoint:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("Invalid value for 'endpoint': %q; the fake runs only %s.", req.Endpoint, JobEndpoint), "invalid_request_error", "endpoint", "invalid_value")
		return
	case req.CompletionWindow != "24h":
		writeError(w, http.StatusBadRequest, fmt.Sprintf("Invalid value for 'completion_window': %q. Supported values are: '24h'.", req.CompletionWindow), "invalid_request_error", "completion_window", "invalid_value")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.files[req.InputFileID]
	switch {
	case !ok:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("Invalid 'input_file_id': '%s'. No such file.", req.InputFileID), "invalid_request_error", "input_file_id", "")
		return
	case f.purpose != "batch":
		writeError(w, http.StatusBadRequest, fmt.Sprintf("Invalid 'input_file_id': '%s'. The file must have purpose 'batch'.", req.InputFileID), "invalid_request_error", "input_file_id", "")
		return
	}
	j := &job{
		id:          "batch_fake" + strconv.FormatInt(s.seq.Add(1), 10),
		inputFileID: f.id,
		endpoint:    req.Endpoint,
		window:      req.CompletionWindow,
		metadata:    req.Metadata,
		status:      StatusValidating,
		created:     time.Now().Unix(),
	}
	j.requests, j.invalid = parseInput(f.data, req.Endpoint)
	if len(j.requests) > 0 {
		j.model = j.requests[0].Model
	}
	if s.enqueuedLimit > 0 && len(j.invalid) == 0 && s.enqueuedLocked(j.model)+j.tokens() > s.enqueuedLimit {
		s.queueRefused++
		j.invalid = []wireBatchError{tokenLimitExceeded(j.model, s.enqueuedLimit)}
	}
	s.jobs[j.id] = j
	s.jobsMade.Add(1)
	fake.WriteJSON(w, http.StatusOK, j.wire())
}

// parseInput decodes a job's input file; the errors make the job fail.
func parseInput(data []byte, endpoint string) ([]JobRequest, []wireBatchError) {
	var reqs []JobRequest
	var errs []wireBatchError
	fail := func(line int, code, msg string) {
		errs = append(errs, wireBatchError{Code: code, Message: msg, Line: &line})
	}
	seen := map[string]bool{}
	for i, text := range strings.Split(string(data), "\n") {
		n := i + 1
		if strings.TrimSpace(text) == "" {
			continue
		}
		var l wireLine
		if err := json.Unmarshal([]byte(text), &l); err != nil {
			fail(n, "invalid_json_line", "This line is not parseable as valid JSON.")
			continue
		}
		var body wireRequest
		if err := json.Unmarshal(l.Body, &body); err != nil {
			fail(n, "invalid_request", "The request body is not a valid chat completions request.")
			continue
		}
		rec, err := decodeRequest(body, l.Body)
		switch {
		case err != nil:
			fail(n, "invalid_request", err.Error())
		case l.CustomID == "":
			fail(n, "missing_required_parameter", "Missing required parameter: 'custom_id'.")
		case seen[l.CustomID]:
			fail(n, "duplicate_custom_id", fmt.Sprintf("The custom_id for this request is a duplicate of another request: %q.", l.CustomID))
		case l.Method != http.MethodPost:
			fail(n, "invalid_method", "The method for this request must be POST.")
		case l.URL != endpoint:
			fail(n, "mismatched_endpoint", fmt.Sprintf("The url for this request does not match the batch endpoint %s.", endpoint))
		case len(reqs) > 0 && rec.Model != reqs[0].Model:
			fail(n, "mismatched_model", "All requests of a batch must use the same model.")
		default:
			seen[l.CustomID] = true
			reqs = append(reqs, JobRequest{CustomID: l.CustomID, Method: l.Method, URL: l.URL, Request: rec})
		}
	}
	if len(reqs) == 0 && len(errs) == 0 {
		errs = append(errs, wireBatchError{Code: "empty_file", Message: "The batch input file is empty."})
	}
	return reqs, errs
}

func (s *Server) serveBatchGet(w http.ResponseWriter, r *http.Request, _ []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[r.PathValue("id")]
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("No batch found with id '%s'.", r.PathValue("id")), "invalid_request_error", "", "")
		return
	}
	j.polls++
	now := time.Now().Unix()
	switch j.status {
	case StatusValidating:
		if len(j.invalid) > 0 {
			s.completeLocked(j)
			break
		}
		j.status, j.inProgressAt = StatusInProgress, now
	case StatusCancelling:
		s.finishLocked(j, StatusCancelled, 0)
	}
	if j.status == StatusInProgress && s.completeAfter > 0 && j.polls >= s.completeAfter {
		s.completeLocked(j)
	}
	fake.WriteJSON(w, http.StatusOK, j.wire())
}

func (s *Server) serveBatchCancel(w http.ResponseWriter, r *http.Request, _ []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[r.PathValue("id")]
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("No batch found with id '%s'.", r.PathValue("id")), "invalid_request_error", "", "")
		return
	}
	switch j.status {
	case StatusValidating, StatusInProgress:
		j.status, j.cancellingAt = StatusCancelling, time.Now().Unix()
		s.cancelled.Add(1)
	case StatusCancelling:
	default:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("Cannot cancel a batch with status '%s'.", j.status), "invalid_request_error", "", "")
		return
	}
	fake.WriteJSON(w, http.StatusOK, j.wire())
}

// completeLocked ends j: failed when its input was not valid, completed
// otherwise.
func (s *Server) completeLocked(j *job) {
	if len(j.invalid) > 0 {
		j.status, j.failedAt = StatusFailed, time.Now().Unix()
		return
	}
	s.finishLocked(j, StatusCompleted, len(j.requests))
}

// finishLocked ends j in status after answering its first answered
// requests; of the rest, an expired job writes batch_expired error lines.
func (s *Server) finishLocked(j *job, status string, answered int) {
	now := time.Now().Unix()
	var outLines, errLines []wireOutputLine
	for i, req := range j.requests {
		if i >= answered {
			if status == StatusExpired {
				errLines = append(errLines, wireOutputLine{
					ID: s.newID("batch_req_fake"), CustomID: req.CustomID,
					Error: ptr(newAPIError("This request could not be executed before the completion window expired.", "", "", "batch_expired")),
				})
			}
			continue
		}
		line, ok := s.answerLineLocked(req)
		switch {
		case !ok:
		case line.Response.StatusCode == http.StatusOK:
			outLines = append(outLines, line)
		default:
			errLines = append(errLines, line)
		}
	}
	j.completed, j.failed = len(outLines), len(errLines)
	if out := s.lineFileLocked(j, "output", outLines); out != nil {
		j.outputFileID = out.id
	}
	if errs := s.lineFileLocked(j, "error", errLines); errs != nil {
		j.errorFileID = errs.id
	}
	j.status = status
	switch status {
	case StatusCompleted:
		j.finalizingAt, j.completedAt = now, now
	case StatusExpired:
		j.expiredAt = now
	case StatusCancelled:
		j.cancelledAt = now
	}
}

// lineFileLocked stores lines as j's output or error file; nil when there
// are none.
func (s *Server) lineFileLocked(j *job, kind string, lines []wireOutputLine) *storedFile {
	if len(lines) == 0 {
		return nil
	}
	return s.storeFileLocked(j.id+"_"+kind+".jsonl", "batch_output", fake.JSONL(lines, s.ctl.Shuffling()))
}

// answerLineLocked answers one job request as the controls say (a combined
// call as combinedLine does, a plain one as a plain call is answered, its
// stop sequences and response format included); false means the request
// gets no line at all.
func (s *Server) answerLineLocked(req JobRequest) (wireOutputLine, bool) {
	line := wireOutputLine{ID: s.newID("batch_req_fake"), CustomID: req.CustomID}
	fail := func(status int, e apiError) (wireOutputLine, bool) {
		line.Response = &wireResponse{StatusCode: status, RequestID: s.newID("req_fake"), Body: map[string]apiError{"error": e}}
		return line, true
	}
	user := lastUser(req.Messages)
	switch {
	case user == nil:
		return fail(http.StatusBadRequest, newAPIError("messages must contain a user message", "invalid_request_error", "messages", ""))
	case s.ctl.Omitted(user.Content):
		return line, false
	case req.Model == "":
		return fail(http.StatusBadRequest, newAPIError("you must provide a model parameter", "invalid_request_error", "model", ""))
	case s.isUnknownModel(req.Model):
		return fail(http.StatusNotFound, newAPIError(fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", req.Model), "invalid_request_error", "", "model_not_found"))
	}
	if rejected, retryable := s.ctl.Rejected(user.Content); rejected {
		if retryable {
			return fail(http.StatusServiceUnavailable, failure(http.StatusServiceUnavailable))
		}
		return fail(http.StatusBadRequest, newAPIError("Invalid prompt: your prompt was flagged as potentially violating our usage policy.", "invalid_request_error", "", "invalid_prompt"))
	}
	if status := s.failLines.Get(user.Content); status != 0 {
		return fail(status, failure(status))
	}
	f, err := readFormat(req.ResponseFormat)
	if err != nil {
		return fail(http.StatusBadRequest, newAPIError(err.Error(), "invalid_request_error", "response_format", ""))
	}
	var content, finish string
	var refusal *string
	if f.batch {
		items, err := batchItems(user.Content)
		if err != nil {
			return fail(http.StatusBadRequest, newAPIError(err.Error(), "invalid_request_error", "messages", ""))
		}
		content, finish, refusal = s.combinedLine(items, f.answer, objectOutputs(req.Messages), req.MaxCompletionTokens)
	} else {
		content, _, finish, err = plainContent(wireRequest{}, req.Request, f, user.Content, 0)
		if err != nil {
			return fail(http.StatusBadRequest, newAPIError(err.Error(), "invalid_request_error", "response_format", ""))
		}
	}
	var prompt int
	for _, m := range req.Messages {
		prompt += len(m.Content)
	}
	usage := wireUsage{PromptTokens: fake.Tokens(prompt), CompletionTokens: fake.Tokens(len(content))}
	usage.TotalTokens = usage.PromptTokens + usage.CompletionTokens
	usage.PromptTokensDetails.CachedTokens = s.cachedTokens(req.Request)
	line.Response = &wireResponse{StatusCode: http.StatusOK, RequestID: s.newID("req_fake"), Body: wireCompletion{
		ID:      s.newID("chatcmpl-fake"),
		Object:  "chat.completion",
		Created: time.Now().Unix(),
		Model:   req.Model,
		Choices: []wireChoice{{Message: lineAnswer(content, refusal), Logprobs: json.RawMessage("null"), FinishReason: finish}},
		Usage:   usage,
	}}
	return line, true
}

func (s *Server) newID(prefix string) string { return prefix + strconv.FormatInt(s.seq.Add(1), 10) }

func (j *job) wire() wireBatch {
	at := func(t int64) *int64 {
		if t == 0 {
			return nil
		}
		return &t
	}
	file := func(id string) *string {
		if id == "" {
			return nil
		}
		return &id
	}
	b := wireBatch{
		ID:               j.id,
		Object:           "batch",
		Endpoint:         j.endpoint,
		Model:            j.model,
		InputFileID:      j.inputFileID,
		CompletionWindow: j.window,
		Status:           j.status,
		OutputFileID:     file(j.outputFileID),
		ErrorFileID:      file(j.errorFileID),
		CreatedAt:        j.created,
		InProgressAt:     at(j.inProgressAt),
		ExpiresAt:        at(j.created + int64((24 * time.Hour).Seconds())),
		FinalizingAt:     at(j.finalizingAt),
		CompletedAt:      at(j.completedAt),
		FailedAt:         at(j.failedAt),
		ExpiredAt:        at(j.expiredAt),
		CancellingAt:     at(j.cancellingAt),
		CancelledAt:      at(j.cancelledAt),
		RequestCounts:    wireRequestCounts{Total: len(j.requests), Completed: j.completed, Failed: j.failed},
		Metadata:         j.metadata,
	}
	if j.status == StatusFailed {
		b.Errors = &wireBatchErrors{Object: "list", Data: j.invalid}
	}
	return b
}

func ptr[T any](v T) *T { return &v }

// combinedLine answers a combined call in a job line (ASYNC_COMBINE) as a
// synchronous combined call is answered: every item, but for those OmitInput
// leaves out; cut off at SetOutputCap or the line's max_completion_tokens
// (finish_reason "length"); refused whole when RefuseInput names an item's
// input.
func (s *Server) combinedLine(items []Item, answer fake.BatchAnswer, object bool, maxTokens int64) (content, finish string, refusal *string) {
	inputs := make([]string, len(items))
	for i, it := range items {
		inputs[i] = it.Prompt()
	}
	if s.ctl.Refused(inputs...) {
		r := "I'm sorry, but I can't help with that request."
		return r, "stop", &r
	}
	content = batchContent(items, answer, object, behaviour{Behaviour: s.ctl.Behaviour()}, s.ctl.AnswerAt)
	content, cut := fake.CutAnswer(content, len(items), s.ctl.OutputCap(), s.ctl.CutOff(len(items)), maxTokens)
	if cut {
		return content, "length", nil
	}
	return content, "stop", nil
}

// lineAnswer is a job line's answer message: content, or a refusal.
func lineAnswer(content string, refusal *string) wireAnswer {
	if refusal != nil {
		return wireAnswer{Role: "assistant", Refusal: refusal}
	}
	return wireAnswer{Role: "assistant", Content: &content}
}
