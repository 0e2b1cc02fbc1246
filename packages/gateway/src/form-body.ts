// Reads a provider request's multipart upload (transcriptions) once the caller is known: fields into the body, the
// form kept whole for the upstream.
import { ApiError } from '@tollgate/core';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { isUploadForm, readUploadForm, UploadFormError } from '@tollgate/providers/routes';
import { limitInBytes } from './json-body.js';

/** The most bytes of an upload when the config names none: OpenAI's limit of an audio file, 25 MB. */
export const DEFAULT_UPLOAD_LIMIT = '25mb';

/**
 * The body reader of an upload route: a `multipart/form-data` body of at most `limit` is read as it streams in (its
 * fields become `req.body`, each file described by its name, type, size and first bytes; the form is kept on the
 * request's context for the upstream, byte for byte). Anything else is 400 `invalid_request`; past the limit, 413.
 */
export function providerFormBody(limit: number | string): RequestHandler {
  const maxBytes = limitInBytes(limit);
  return function readProviderFormBody(req: Request, _res: Response, next: NextFunction): void {
    if (!isUploadForm(req.headers['content-type'])) {
      next(new ApiError('invalid_request', 'This route takes a multipart/form-data upload.', { param: 'file' }));
      return;
    }
    readUploadForm(req, maxBytes).then(
      (form) => {
        // A copy: the chain may change the body's fields (a masked prompt); the form's stay as they came.
        req.body = { ...form.fields };
        req.tollgate.set('providers.uploadForm', form);
        next();
      },
      (error: unknown) => {
        if (!(error instanceof UploadFormError)) next(error);
        else if (error.status === 413) next(new ApiError('request_too_large', error.message));
        else next(new ApiError('invalid_request', error.message, { param: 'file' }));
      },
    );
  };
}
