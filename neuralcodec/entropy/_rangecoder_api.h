/* C API of the range decoder for other extensions (context-model kernels).
 *
 * `_rangecoder` exports one PyCapsule, `neuralcodec.entropy._rangecoder._C_API`, holding a
 * `NcRangeDecoderApi`. A kernel that picks each symbol's table from values it decoded earlier
 * (and so cannot hand the coder a whole chunk of indexes) imports it once at module init:
 *
 *     PyImport_ImportModule("neuralcodec.entropy._rangecoder")   (PyCapsule_Import only walks
 *                                                                  attributes: import it first)
 *     const NcRangeDecoderApi *api = PyCapsule_Import(NC_RANGE_DECODER_API, 0);
 *     if (!api || api->version != NC_RANGE_DECODER_API_VERSION) -> fail
 *
 * and decodes through a *run* on an existing `_rangecoder.Decoder` object:
 *
 *     NcDecodeRun *run = api->begin(decoder, tables);        with the GIL; NULL + exception
 *     Py_BEGIN_ALLOW_THREADS
 *     for each symbol: st = api->decode(run, j, &value);      j = table index; 0 or -1
 *     Py_END_ALLOW_THREADS
 *     if (api->end(run, st) < 0) -> exception set             with the GIL; always call it
 *
 * The symbols of a run continue the decoder's stream exactly as `Decoder.decode` chunks do
 * (lane = symbol count mod 4), so runs and ordinary chunks may alternate on one decoder. The
 * coder knows nothing of the model: the caller computes every table index.
 *
 * Contract:
 *   begin   checks the types, refuses a decoder that failed earlier or is in use (claims it) and
 *           holds references to both objects until `end`.
 *   decode  needs no GIL; decodes the next value with table j (checked against the table count:
 *           -1 if out of range) into *out. -1 means the stream is inconsistent: stop and `end`.
 *   end     status < 0, or a lane read past its end, marks the decoder failed and raises
 *           `DecodeError`; otherwise the run's state becomes the decoder's. Frees the run.
 *   num_tables  number of tables of the run's Tables (to validate a model's indexes up front).
 */
#ifndef NEURALCODEC_RANGECODER_API_H
#define NEURALCODEC_RANGECODER_API_H

#include <Python.h>
#include <stdint.h>

#define NC_RANGE_DECODER_API "neuralcodec.entropy._rangecoder._C_API"
#define NC_RANGE_DECODER_API_VERSION 1

typedef struct NcDecodeRun NcDecodeRun;

typedef struct {
    int version;
    NcDecodeRun *(*begin)(PyObject *decoder, PyObject *tables);
    int (*decode)(NcDecodeRun *run, Py_ssize_t table, int32_t *out);
    int (*end)(NcDecodeRun *run, int status);
    Py_ssize_t (*num_tables)(const NcDecodeRun *run);
} NcRangeDecoderApi;

#endif
